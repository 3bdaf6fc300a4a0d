"""``edited_dataset/transforms.json`` is the capture's own transforms.json (its frame,
intrinsics, applied_transform, ply_file_path, masks, unknown keys) with only the training frames' file_path
changed (plus relevance_path / edits); nerfacto-tiny trained on the export sees exactly the capture's cameras.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
from relevance_nerf2nerf.nerf.export import (
    _transforms_from_cameras,
    export_edited_dataset,
)
from relevance_nerf2nerf.scenes import generate_scene

ADDED = {"file_path", "edits", "relevance_path"}


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """A generated scene whose transforms.json also carries what real captures have."""
    root = generate_scene(
        tmp_path_factory.mktemp("capture"), seed=1, num_views=10, width=16, height=16
    ).output_dir
    meta = json.loads((root / "transforms.json").read_text())
    meta["applied_transform"] = [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]
    meta["ply_file_path"] = "sparse_pc.ply"
    meta["note_for_other_tools"] = {"kept": True}
    (root / "sparse_pc.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    (root / "masks_all").mkdir()
    for frame in meta["frames"]:
        name = Path(frame["file_path"]).name
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "masks_all" / name)
        frame["mask_path"] = f"masks_all/{name}"
    (root / "transforms.json").write_text(json.dumps(meta, indent=2))
    return root


def _config(base, data: Path, output: Path, name: str):
    config = copy.deepcopy(base)
    config.vis, config.output_dir, config.experiment_name, config.timestamp = "tensorboard", output, "t", name
    config.max_num_iterations = 2
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    return config


def test_export_is_the_captures_transforms_with_edited_file_paths(capture, tmp_path):
    config = _config(relevance_nerf2nerf_tiny.config, capture, tmp_path, "edit")
    config.pipeline.instruction = "make the cube blue"
    editing = config.setup(local_rank=0, world_size=1)
    editing.setup()  # the first, full export
    datamanager = editing.pipeline.datamanager
    export = Path(editing.base_dir) / "edited_dataset"
    blue = torch.zeros(1, 3, 16, 16)
    blue[:, 2] = 1.0
    datamanager.set_relevance(2, torch.full((1, 1, 16, 16), 0.75))
    datamanager.set_edited_image(2, blue)
    export_edited_dataset(datamanager, export, indices=[2])  # what an update writes

    original = json.loads((capture / "transforms.json").read_text())
    exported = json.loads((export / "transforms.json").read_text())
    assert {k: v for k, v in exported.items() if k != "frames"} == {
        k: v for k, v in original.items() if k != "frames"
    }
    train_names = {Path(f).name for f in datamanager.train_dataparser_outputs.image_filenames}
    assert len(exported["frames"]) == len(original["frames"]) == 10 and len(train_names) == 9
    for before, after in zip(original["frames"], exported["frames"], strict=True):
        name = Path(before["file_path"]).name
        if name in train_names:
            assert {k: v for k, v in after.items() if k not in ADDED} == {
                k: v for k, v in before.items() if k != "file_path"
            }
            assert after["file_path"] == f"images/{Path(name).stem}.png"
        else:
            assert after == before  # the eval view: untouched, its image copied beside
        for key in ("file_path", "mask_path"):
            assert (export / after[key]).is_file()
    edited = next(f for f in exported["frames"] if f.get("relevance_path"))
    assert edited["edits"] == 1
    assert np.asarray(Image.open(export / edited["file_path"]))[..., 2].min() == 255
    assert (export / "sparse_pc.ply").read_bytes() == (capture / "sparse_pc.ply").read_bytes()
    assert not list(export.rglob(".*partial*"))

    # retrain nerfacto-tiny on the export: the very cameras of the capture, train and eval split
    retrained = _config(nerfacto_tiny.config, export, tmp_path, "retrain").setup(local_rank=0, world_size=1)
    retrained.setup()
    retrained.train()
    for split in ("train_dataset", "eval_dataset"):
        ours, theirs = getattr(datamanager, split), getattr(retrained.pipeline.datamanager, split)
        assert torch.equal(ours.cameras.camera_to_worlds, theirs.cameras.camera_to_worlds), split
        assert torch.equal(ours.cameras.fx, theirs.cameras.fx) and torch.equal(
            ours.cameras.cx, theirs.cameras.cx
        )
    ours, theirs = (
        datamanager.train_dataparser_outputs,
        retrained.pipeline.datamanager.train_dataparser_outputs,
    )
    assert torch.equal(ours.dataparser_transform, theirs.dataparser_transform)
    assert ours.dataparser_scale == theirs.dataparser_scale

    # other dataparsers: the training frames from the cameras, mapped back to the capture's frame
    names = [f"{Path(f).stem}.png" for f in datamanager.train_dataparser_outputs.image_filenames]
    fallback = _transforms_from_cameras(datamanager, "images", names)
    by_name = {Path(f["file_path"]).name: f["transform_matrix"] for f in original["frames"]}
    applied = torch.eye(4)
    applied[:3] = torch.tensor(original["applied_transform"])  # the input frame -> transforms.json's
    for frame in fallback["frames"]:
        capture_pose = torch.tensor(by_name[Path(frame["file_path"]).name])
        assert torch.allclose(applied @ torch.tensor(frame["transform_matrix"]), capture_pose, atol=1e-5)
