"""``relevance-eval``: both sub-commands end to end on tiny inputs (tiny IP2P, tiny CLIP, a tiny trained
scene), and bad input answered in one line before anything is written."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from relevance_nerf2nerf.cli.eval import main
from relevance_nerf2nerf.scenes import generate_scene


def _records(folder: Path, drop: str | None = None) -> Path:
    info = generate_scene(folder / "scene", seed=0, num_views=2, width=32, height=32)
    lines = []
    for path, colour in zip(info.image_paths, ("blue", "green"), strict=True):
        record = {"image": str(path.relative_to(folder)), "instruction": f"make the cube {colour}",
                  "input_caption": "a red cube", "output_caption": f"a {colour} cube"}  # fmt: skip
        record.pop(drop, None)
        lines.append(json.dumps(record))
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _one_line_error(capsys, *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("relevance-eval: error:"), err
    for word in words:
        assert word in err[0], err[0]


def test_images_sweep_writes_json_and_plot(tmp_path, tiny_ip2p_dir, tiny_clip_dir):
    records = _records(tmp_path / "records")
    out = tmp_path / "sweep"
    args = ["images", "--records", str(records), "--output-dir", str(out), "--editor-model",
            str(tiny_ip2p_dir), "--clip-model", str(tiny_clip_dir), "--mask-thresholds", "0", "0.5",
            "--image-guidances", "1.0", "1.5", "--steps", "2"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert result["num_records"] == 2 and len(result["points"]) == 4
    assert {(p["mask_threshold"], p["image_guidance"]) for p in result["points"]} == {
        (0.0, 1.0), (0.0, 1.5), (0.5, 1.0), (0.5, 1.5)
    }  # fmt: skip
    for point in result["points"]:
        assert -1 <= point["clip_directional_similarity"] <= 1 and -1 <= point["clip_image_similarity"] <= 1
        assert len(point["per_record_image"]) == 2
    with Image.open(out / "sweep.png") as plot:
        assert plot.size[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records", "sweep"]  # no staging folder left
    assert main(args) == 2  # the folder exists now: refused, nothing overwritten


@pytest.mark.parametrize("drop", ["output_caption", "image"])
def test_images_record_without_a_field_is_one_line(tmp_path, capsys, drop):
    records = _records(tmp_path / "records", drop=drop)
    out = tmp_path / "sweep"
    args = ["images", "--records", str(records), "--output-dir", str(out), "--editor-model", "/nonexistent"]
    assert main(args) == 2
    _one_line_error(capsys, "records.jsonl line 1", drop)
    assert not out.exists()


# --- scene ------------------------------------------------------------------------------------------------
def _run_config(base, scene: Path, output: Path, name: str, iterations: int):
    config = copy.deepcopy(base)
    config.vis = "tensorboard"
    config.output_dir, config.experiment_name, config.timestamp = output, "eval", name
    config.max_num_iterations = iterations
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    return config


def _fake_run(config, root: Path) -> Path:
    """A run folder with config.yml and a (never read) checkpoint file: enough for the input checks."""
    config.output_dir = root
    config.get_base_dir().mkdir(parents=True)
    (config.get_base_dir() / "config.yml").write_text(yaml.dump(config))  # as ns-train writes it
    checkpoints = config.get_base_dir() / "nerfstudio_models"
    checkpoints.mkdir()
    (checkpoints / "step-000000001.ckpt").write_bytes(b"")
    return config.get_base_dir() / "config.yml"


def test_scene_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny

    scene = generate_scene(tmp_path / "scene", seed=0, num_views=2, width=32, height=32).output_dir
    out = tmp_path / "eval"
    edit = _run_config(relevance_nerf2nerf_tiny.config, scene, tmp_path, "edit", 1)
    edit.pipeline.instruction = "make the cube blue"
    edited = _fake_run(edit, tmp_path / "runs")
    cases = [
        (["--edited-config", str(tmp_path / "missing.yml")], ["missing.yml", "does not exist"]),
        (["--edited-config", str(edited)], ["names no base run", "--base-config"]),
        (["--edited-config", str(edited), "--base-config", str(edited)], ["edited run itself"]),
    ]
    for extra, words in cases:
        assert main(["scene", "--output-dir", str(out), "--clip-model", "none", *extra]) == 2
        _one_line_error(capsys, *words)
    base = copy.deepcopy(edit)
    base.timestamp = "base"
    base_config = _fake_run(base, tmp_path / "runs")
    args = ["scene", "--output-dir", str(out), "--edited-config", str(edited), "--base-config"]
    assert main([*args, str(base_config), "--input-caption", "a red cube"]) == 2
    _one_line_error(capsys, "--output-caption is missing")
    assert not out.exists()


@pytest.mark.slow
def test_scene_evaluation_end_to_end(tmp_path, tiny_ip2p_dir, tiny_clip_dir):
    """A tiny base and its edit trained in-process, then ``relevance-eval scene`` with ground truth, CLIP."""

    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny

    scene = generate_scene(tmp_path / "scene", seed=0, num_views=6, width=32, height=32).output_dir
    base = _run_config(nerfacto_tiny.config, scene, tmp_path / "runs", "base", 20)
    edit = _run_config(relevance_nerf2nerf_tiny.config, scene, tmp_path / "runs", "edit", 10)
    edit.pipeline.instruction = "make the cube blue"
    edit.pipeline.editor_model = str(tiny_ip2p_dir)
    edit.pipeline.edit_every = 5
    edit.pipeline.edit_steps = 2
    edit.pipeline.base_checkpoint = base.get_base_dir()
    for config in (base, edit):
        config.save_config()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()
    cameras = trainer.pipeline.datamanager.train_dataset.cameras
    fov = 2 * math.degrees(math.atan(16 / float(cameras.fy[0])))  # three.js vertical fov of a 32 px view
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    path = [{"camera_to_world": torch.cat([c2w, bottom]).flatten().tolist(), "fov": fov, "aspect": 1.0}
            for c2w in cameras.camera_to_worlds[:3]]  # fmt: skip
    camera_path = tmp_path / "camera_path.json"
    camera_path.write_text(json.dumps({"render_height": 32, "render_width": 32, "camera_path": path}))
    out = tmp_path / "eval"
    args = ["scene", "--edited-config", str(edit.get_base_dir() / "config.yml"), "--scene", str(scene),
            "--clip-model", str(tiny_clip_dir), "--input-caption", "a red cube", "--output-caption",
            "a blue cube", "--output-dir", str(out)]  # fmt: skip
    assert main(args) == 0  # the base comes from the edit's --pipeline.base-checkpoint
    record = json.loads((out / "eval.json").read_text())
    assert record["base_config"] == str(base.get_base_dir() / "config.yml")
    assert record["views"] == [f"frame_{i:05d}.png" for i in range(6)] and record["mask_threshold"] == 0.5
    metrics, truth = record["metrics"], record["ground_truth"]
    assert metrics["excluded_region"] == "ground-truth mask of the cube"
    for key in ("psnr_outside_edit", "ssim_outside_edit", "clip_directional_similarity",
                "clip_frame_consistency", "clip_edit_consistency", "clip_text_image_similarity",
                "clip_image_similarity"):  # fmt: skip
        assert isinstance(metrics[key], float), key
    assert metrics["lpips_whole_image"] == "unavailable" or isinstance(metrics["lpips_whole_image"], float)
    assert truth["psnr_outside_object_after_vs_before"] == metrics["psnr_outside_edit"]
    assert set(truth["non_target_colour_change"]) == {"cone", "sphere"}
    assert isinstance(truth["relevance_iou_with_object"], float)
    assert "| clip_directional_similarity |" in (out / "eval.md").read_text()
    with Image.open(out / "contact_sheet.png") as sheet:  # ground truth, before, after, relevance, mask
        assert sheet.size[1] == 5 * 32 * 3

    on_path = tmp_path / "eval_path"  # a viewer camera path instead of the dataset views, no CLIP
    args = ["scene", "--edited-config", str(edit.get_base_dir() / "config.yml"), "--camera-path",
            str(camera_path), "--clip-model", "none", "--output-dir", str(on_path)]  # fmt: skip
    assert main(args) == 0
    record = json.loads((on_path / "eval.json").read_text())
    assert record["views"] == ["path_00000", "path_00001", "path_00002"] and "ground_truth" not in record
    assert record["metrics"]["excluded_region"] == "base's relevance for the instruction >= 0.5"
    assert record["metrics"]["clip"].startswith("unavailable")
