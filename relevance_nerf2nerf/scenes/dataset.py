"""Write a synthetic scene as a nerfstudio dataset with ground-truth object masks.

Layout of ``output_dir``::

    transforms.json                     nerfstudio format (fl_x, fl_y, cx, cy, w, h, transform_matrix)
    images/frame_00000.png ...          RGB renders
    masks/<object name>/frame_00000.png per-view visibility mask of each object (255 = object)
    scene.json                          the scene description (objects: name, shape, colour, rgb, ...)

With held-out views (``num_held_out > 0``) the last frames are evaluation cameras that are never trained on:
``transforms.json`` then lists ``train_filenames``, ``val_filenames`` and ``test_filenames``, which
nerfstudio's ``nerfstudio-data`` parser uses instead of its fraction split (the held-out frames form the
val and test splits). Their masks are written like every other frame's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from relevance_nerf2nerf.diffusion.images import to_uint8
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.scenes.render import render_views
from relevance_nerf2nerf.scenes.spec import (
    Cameras,
    SceneSpec,
    concatenate_cameras,
    held_out_cameras,
    random_scene_spec,
    ring_cameras,
)


@dataclass
class SceneInfo:
    """A written scene: where it is, what is in it and the cameras it was rendered from."""

    output_dir: Path
    spec: SceneSpec
    cameras: Cameras
    image_paths: list[Path]
    mask_paths: dict[str, list[Path]]
    held_out_names: list[str] = field(default_factory=list)
    """Frame file names of the evaluation views (never trained on); empty: nerfstudio's own split."""

    @property
    def object_names(self) -> list[str]:
        """The scene's object names."""
        return [obj.name for obj in self.spec.objects]

    @property
    def train_names(self) -> list[str]:
        """Frame file names of the views a NeRF trains on when the scene has held-out views."""
        held_out = set(self.held_out_names)
        return [p.name for p in self.image_paths if p.name not in held_out]


def frame_name(index: int) -> str:
    """File name of frame ``index``, e.g. ``frame_00003.png``.

    Args:
        index (int): the frame's index.
    """
    return f"frame_{index:05d}.png"


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
    num_held_out: int = 0,
) -> SceneInfo:
    """Generate a random scene from ``seed`` and write it (renders, masks, transforms.json, scene.json).

    The same arguments always write byte-identical files.

    Args:
        output_dir (str | Path): folder to write into.
        seed (int, default 0): scene seed (objects, shapes, colours, places).
        num_views (int, default 24): training cameras on a ring around the scene.
        width (int, default 64): image width in pixels.
        height (int, default 64): image height in pixels.
        num_objects (int, default 3): objects in the scene (one per shape).
        supersample (int, default 2): anti-aliasing rays per pixel side.
        radius (float, default 3.2): ring radius.
        elevation (float, default 1.9): mean camera height.
        fov_degrees (float, default 45.0): horizontal field of view.
        num_held_out (int, default 0): evaluation cameras (``held_out_cameras``) written after the training
            views and listed as nerfstudio's val/test split; 0 leaves the split to nerfstudio.
    """
    if num_held_out < 0:
        raise InvalidInputError(f"num_held_out must be 0 or more, got {num_held_out}")
    spec = random_scene_spec(seed, num_objects)
    cameras = ring_cameras(
        num_views, width, height, radius=radius, elevation=elevation, fov_degrees=fov_degrees
    )
    if num_held_out:
        held_out = held_out_cameras(
            num_held_out,
            num_views,
            width,
            height,
            radius=radius,
            elevation=elevation,
            fov_degrees=fov_degrees,
        )
        cameras = concatenate_cameras(cameras, held_out)
    return write_scene(output_dir, spec, cameras, supersample=supersample, num_held_out=num_held_out)


def write_scene(
    output_dir: str | Path, spec: SceneSpec, cameras: Cameras, *, supersample: int = 2, num_held_out: int = 0
) -> SceneInfo:
    """Render ``spec`` from ``cameras`` and write the dataset to ``output_dir``.

    Args:
        output_dir (str | Path): folder to write into.
        spec (SceneSpec): the scene.
        cameras (Cameras): every camera, training ones first.
        supersample (int, default 2): anti-aliasing rays per pixel side.
        num_held_out (int, default 0): the last this many cameras are evaluation views, never trained on.
    """
    output_dir = Path(output_dir)
    if supersample < 1:
        raise InvalidInputError(f"supersample must be at least 1, got {supersample}")
    if not 0 <= num_held_out < len(cameras):
        raise InvalidInputError(
            f"num_held_out must leave at least one training view: {num_held_out} of {len(cameras)} cameras"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidInputError(
            f"{output_dir} exists and is not a directory: choose another output directory"
        )
    images, masks = render_views(spec, cameras, supersample=supersample)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images).cpu().numpy()
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
    files = [frame["file_path"] for frame in frames]
    held_out = files[len(files) - num_held_out :] if num_held_out else []
    if held_out:  # nerfstudio-data reads these instead of its fraction split (all three must be present)
        transforms["train_filenames"] = files[: len(files) - num_held_out]
        transforms["val_filenames"] = held_out
        transforms["test_filenames"] = held_out
    (output_dir / "transforms.json").write_text(json.dumps(transforms, indent=2))
    scene = {"spec": spec.to_dict(), "num_views": len(cameras), "supersample": supersample}
    if held_out:
        scene["num_held_out"] = num_held_out
    (output_dir / "scene.json").write_text(json.dumps(scene, indent=2))
    return SceneInfo(output_dir, spec, cameras, image_paths, mask_paths, [Path(f).name for f in held_out])


def load_scene(scene_dir: str | Path) -> SceneInfo:
    """Read back a scene written by ``generate_scene`` (spec, cameras and file lists).

    Args:
        scene_dir (str | Path): the folder ``generate_scene`` wrote.
    """
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
    held_out = [Path(f).name for f in transforms.get("val_filenames", [])]
    return SceneInfo(scene_dir, spec, cameras, image_paths, mask_paths, held_out)
