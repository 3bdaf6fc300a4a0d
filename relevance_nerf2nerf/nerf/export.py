"""The edited dataset: the editing run's training views as a nerfstudio dataset (PNG images, relevance
maps, ``transforms.json``) under ``<run>/edited_dataset``, rewritten after every update, each file whole."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from relevance_nerf2nerf.outputs import atomic_write

if TYPE_CHECKING:
    from relevance_nerf2nerf.nerf.datamanager import RelevanceDataManager


def _save_png(array: torch.Tensor, path: Path) -> None:
    """(H, W, C) uint8 tensor -> PNG (C = 1 is saved as grayscale), written whole."""
    data = array.cpu().numpy()
    atomic_write(path, lambda temporary: Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data).save(
        temporary, format="PNG"
    ))


def _write_json(data: dict, path: Path) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(data, indent=2)))


def _camera_model_name(camera_type: int) -> str:
    """nerfstudio's transforms.json name of a CameraType value (OPENCV for perspective cameras)."""
    from nerfstudio.cameras.cameras import CAMERA_MODEL_TO_TYPE

    names = {kind.value: name for name, kind in reversed(CAMERA_MODEL_TO_TYPE.items())}
    names[CAMERA_MODEL_TO_TYPE["OPENCV"].value] = "OPENCV"
    return names[camera_type]


def capture_transforms(datamanager: RelevanceDataManager) -> tuple[dict, Path] | None:
    """The capture's own ``transforms.json`` (parsed) and its folder, when the data was read by nerfstudio's
    ``nerfstudio-data`` dataparser; None for other dataparsers.

    Args:
        datamanager (RelevanceDataManager): the edit's datamanager.
    """
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    config = datamanager.dataparser.config
    if not isinstance(config, NerfstudioDataParserConfig):
        return None
    data = Path(config.data)
    path = data if data.suffix == ".json" else data / "transforms.json"
    return json.loads(path.read_text()), path.parent


def export_edited_dataset(
    datamanager: RelevanceDataManager, output_dir: Path, indices: list[int] | None = None
) -> Path:
    """Write the edited training images (``images/``), their relevance maps (``relevance/``) and a
    ``transforms.json`` nerfstudio (or any tool reading the capture) can use in place of the capture.

    With nerfstudio's dataparser the ``transforms.json`` is a copy of the capture's own, in the capture's
    frame: every key kept (intrinsics, ``applied_transform``, ``ply_file_path``, ``mask_path``, splits...);
    the training frames' ``file_path`` points at the edited image, and they gain ``relevance_path`` and
    ``edits`` (updates of that view). Every other file it references inside the capture's folder (the eval
    views' images, masks, depths, the point cloud) is copied to the same relative path on the first (full)
    export, so the export is self-contained; a path outside that folder is written as an absolute path.
    With ``--downscale-factor d > 1`` the edited images go to ``images_d/`` as nerfstudio looks for them:
    train on the export with the same factor. Other dataparsers: the training frames only, with poses mapped
    back to the capture's frame (``transform_poses_to_original_space``) and per-frame intrinsics.

    Args:
        datamanager (RelevanceDataManager): the editing run's datamanager (edited images, relevance maps,
            counters).
        output_dir (Path): the export folder (``<run>/edited_dataset``).
        indices (list[int] | None, default None): write only these views' images (after an update); None
            writes everything.
    """
    output_dir = Path(output_dir)
    outputs = datamanager.train_dataparser_outputs
    names = [f"{Path(name).stem}.png" for name in outputs.image_filenames]
    factor = getattr(datamanager.dataparser, "downscale_factor", None) or 1
    image_folder = "images" if factor == 1 else f"images_{factor}"
    (output_dir / image_folder).mkdir(parents=True, exist_ok=True)
    (output_dir / "relevance").mkdir(exist_ok=True)
    for i in range(datamanager.num_views) if indices is None else indices:
        _save_png(datamanager.edited_images[i], output_dir / image_folder / names[i])
        if datamanager.has_relevance(i):
            _save_png(datamanager.relevance_maps[i], output_dir / "relevance" / names[i])
    capture = capture_transforms(datamanager)
    if capture is None:
        transforms = _transforms_from_cameras(datamanager, image_folder, names)
    else:
        transforms = _capture_copy(datamanager, *capture, names, output_dir, copy_files=indices is None)
    _write_json(transforms, output_dir / "transforms.json")
    return output_dir


def _frame_extras(datamanager: RelevanceDataManager, i: int, folder: str, name: str) -> dict[str, Any]:
    """A training frame's entries pointing at the export: edited image, relevance map, number of edits."""
    extras: dict[str, Any] = {"file_path": f"{folder}/{name}", "edits": int(datamanager.edit_counts[i])}
    if datamanager.has_relevance(i):
        extras["relevance_path"] = f"relevance/{name}"
    return extras


def _capture_copy(
    datamanager: RelevanceDataManager, meta: dict, data_dir: Path, names: list[str], output_dir: Path,
    copy_files: bool,
) -> dict:  # fmt: skip
    """The capture's transforms.json with the training frames pointed at the export (see the caller)."""
    parser = datamanager.dataparser
    train_index = {Path(f): i for i, f in enumerate(datamanager.train_dataparser_outputs.image_filenames)}
    meta = copy.deepcopy(meta)
    renamed: dict[str, str] = {}
    for frame in meta["frames"]:
        i = train_index.get(parser._get_fname(Path(frame["file_path"]), data_dir))
        if i is None:  # not a training view: keep the capture's image
            frame["file_path"] = _carry(frame["file_path"], data_dir, output_dir, copy_files)
        else:
            extras = _frame_extras(datamanager, i, "images", names[i])  # images_d/ with a downscale factor
            renamed[frame["file_path"]] = extras["file_path"]
            frame.update(extras)
        for key in ("mask_path", "depth_file_path"):
            if key in frame:
                frame[key] = _carry(frame[key], data_dir, output_dir, copy_files)
    for split in ("train", "val", "test"):
        if f"{split}_filenames" in meta:
            meta[f"{split}_filenames"] = [renamed.get(f, f) for f in meta[f"{split}_filenames"]]
    if "ply_file_path" in meta:
        meta["ply_file_path"] = _carry(meta["ply_file_path"], data_dir, output_dir, copy_files)
    return meta


def _carry(relative: str, data_dir: Path, output_dir: Path, copy_files: bool) -> str:
    """Make a path of the capture's transforms.json valid in the export: a file inside the capture's folder
    is copied to the same relative path (the entry is unchanged); anything else becomes absolute."""
    source = (data_dir / relative).resolve()
    if Path(relative).is_absolute() or not source.is_relative_to(data_dir.resolve()):
        return str(source)
    target = output_dir / relative
    if copy_files and source.is_file() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return relative


def _transforms_from_cameras(datamanager: RelevanceDataManager, folder: str, names: list[str]) -> dict:
    """A nerfstudio transforms.json of the training views from their cameras, in the capture's frame."""
    outputs = datamanager.train_dataparser_outputs
    cameras = datamanager.train_dataset.cameras
    poses = outputs.transform_poses_to_original_space(
        cameras.camera_to_worlds.cpu(), camera_convention="opengl"
    )
    frames = []
    for i, name in enumerate(names):
        pose = torch.eye(4)
        pose[:3] = poses[i]
        frame = {
            **_frame_extras(datamanager, i, folder, name),
            "transform_matrix": pose.tolist(),
            "fl_x": float(cameras.fx[i]),
            "fl_y": float(cameras.fy[i]),
            "cx": float(cameras.cx[i]),
            "cy": float(cameras.cy[i]),
            "w": int(cameras.width[i]),
            "h": int(cameras.height[i]),
        }
        if cameras.distortion_params is not None:
            frame["distortion_params"] = [float(v) for v in cameras.distortion_params[i]]
        frames.append(frame)
    return {"camera_model": _camera_model_name(int(cameras.camera_type.flatten()[0])), "frames": frames}
