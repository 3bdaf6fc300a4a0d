"""Write a synthetic scene as a nerfstudio dataset with ground-truth object masks.

Layout of ``output_dir``::

    transforms.json                     nerfstudio format (fl_x, fl_y, cx, cy, w, h, transform_matrix)
    images/frame_00000.png ...          RGB renders
    masks/<object name>/frame_00000.png per-view visibility mask of each object (255 = object)
    scene.json                          the scene description (objects: name, shape, colour, rgb, ...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.scenes.render import render_views
from relevance_nerf2nerf.scenes.spec import Cameras, SceneSpec, random_scene_spec, ring_cameras


@dataclass
class SceneInfo:
    """A written scene: where it is, what is in it and the cameras it was rendered from."""

    output_dir: Path
    spec: SceneSpec
    cameras: Cameras
    image_paths: list[Path]
    mask_paths: dict[str, list[Path]]

    @property
    def object_names(self) -> list[str]:
        return [obj.name for obj in self.spec.objects]


def frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3) floats in [0, 1] -> uint8 with round-to-nearest."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def generate_scene(
    output_dir: str | Path,
    *,
    seed: int = 0,
    num_views: int = 24,
    width: int = 64,
    height: int = 64,
    num_objects: int = 3,
    supersample: int = 2,
    radius: float = 3.2,
    elevation: float = 1.9,
    fov_degrees: float = 45.0,
) -> SceneInfo:
    """Generate a random scene from ``seed`` and write it (renders, masks, transforms.json, scene.json).

    The same arguments always write byte-identical files.
    """
    spec = random_scene_spec(seed, num_objects)
    cameras = ring_cameras(
        num_views, width, height, radius=radius, elevation=elevation, fov_degrees=fov_degrees
    )
    return write_scene(output_dir, spec, cameras, supersample=supersample)


def write_scene(
    output_dir: str | Path, spec: SceneSpec, cameras: Cameras, *, supersample: int = 2
) -> SceneInfo:
    """Render ``spec`` from ``cameras`` and write the dataset to ``output_dir``."""
    output_dir = Path(output_dir)
    if supersample < 1:
        raise InvalidInputError(f"supersample must be at least 1, got {supersample}")
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidInputError(
            f"{output_dir} exists and is not a directory: choose another output directory"
        )
    images, masks = render_views(spec, cameras, supersample=supersample)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images)
    image_paths, mask_paths = [], {name: [] for name in masks}
    frames = []
    for i in range(len(cameras)):
        path = output_dir / "images" / frame_name(i)
        Image.fromarray(pixels[i]).save(path)
        image_paths.append(path)
        frames.append({"file_path": f"images/{frame_name(i)}", "transform_matrix": cameras.c2w[i].tolist()})
    for name, mask in masks.items():
        (output_dir / "masks" / name).mkdir(parents=True, exist_ok=True)
        for i in range(len(cameras)):
            path = output_dir / "masks" / name / frame_name(i)
            Image.fromarray(mask[i].numpy().astype(np.uint8) * 255).save(path)
            mask_paths[name].append(path)
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": cameras.fx,
        "fl_y": cameras.fy,
        "cx": cameras.cx,
        "cy": cameras.cy,
        "w": cameras.width,
        "h": cameras.height,
        "frames": frames,
    }
    (output_dir / "transforms.json").write_text(json.dumps(transforms, indent=2))
    scene = {"spec": spec.to_dict(), "num_views": len(cameras), "supersample": supersample}
    (output_dir / "scene.json").write_text(json.dumps(scene, indent=2))
    return SceneInfo(output_dir, spec, cameras, image_paths, mask_paths)


def load_scene(scene_dir: str | Path) -> SceneInfo:
    """Read back a scene written by ``generate_scene`` (spec, cameras and file lists)."""
    scene_dir = Path(scene_dir)
    if not (scene_dir / "scene.json").is_file() or not (scene_dir / "transforms.json").is_file():
        raise InvalidInputError(
            f"{scene_dir} is not a generated scene (no scene.json/transforms.json): run relevance-scene first"
        )
    scene = json.loads((scene_dir / "scene.json").read_text())
    transforms = json.loads((scene_dir / "transforms.json").read_text())
    spec = SceneSpec.from_dict(scene["spec"])
    c2w = torch.tensor([f["transform_matrix"] for f in transforms["frames"]], dtype=torch.float32)
    cameras = Cameras(
        c2w,
        transforms["fl_x"],
        transforms["fl_y"],
        transforms["cx"],
        transforms["cy"],
        transforms["w"],
        transforms["h"],
    )
    image_paths = [scene_dir / f["file_path"] for f in transforms["frames"]]
    names = [Path(f["file_path"]).name for f in transforms["frames"]]
    mask_paths = {obj.name: [scene_dir / "masks" / obj.name / n for n in names] for obj in spec.objects}
    return SceneInfo(scene_dir, spec, cameras, image_paths, mask_paths)
