"""`relevance-preview`: the preview's masks find the named object, every output is written (generated scene
and the LLFF fern), and bad inputs fail in one line with nothing written."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relevance_nerf2nerf import preview
from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.cli.preview import main
from relevance_nerf2nerf.scenes import generate_scene

SHARED_FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff-fern"
FERN = Path(os.environ.get("RELEVANCE_FERN_DIR", SHARED_FERN))
FAST = ["--method", "relevance-nerf2nerf-tiny", "--device", "cpu", "--timing-views", "1"]
FAST += ["--nerf-timing-iterations", "1"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Seed 0: an orange cone, a red cube and a purple sphere, 12 views of 64x64."""
    return generate_scene(tmp_path_factory.mktemp("scene") / "scene", seed=0, num_views=12)


@pytest.fixture(scope="module")
def toy_editor():
    from relevance_nerf2nerf.diffusion.editor import load_editor

    return load_editor(TOY_EDITOR_DIR)


def _settings(data, output_dir, instructions, **changes):
    return preview.PreviewSettings(
        data=Path(data), instruction=tuple(instructions), output_dir=Path(output_dir), **changes
    )


def test_sample_indices_spread_evenly_and_all_takes_every_view():
    assert preview.sample_indices(24, 6) == [0, 5, 9, 14, 18, 23]
    assert preview.sample_indices(24, 1) == [0]
    assert preview.sample_indices(5, 9) == preview.sample_indices(5, "all") == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("instruction", ["make the cube blue", "make the sphere green"])
def test_mask_at_tau_half_overlaps_the_named_object_most(scene, toy_editor, tmp_path, instruction):
    """The preview's relevance of the sampled views, thresholded at 0.5, has its highest IoU with the
    object the instruction names (ground-truth masks of the generated scene)."""
    settings = _settings(scene.output_dir, tmp_path / "out", [instruction], num_views=6)
    views = preview.load_views(settings, size_limit=1.0)
    schedule = preview.Schedule(300, 10, 2, 1, False, (0.02, 0.98))
    result = preview.preview_instruction(
        toy_editor, views, instruction, settings, TOY_EDITOR_IQR_RATIO, schedule, 0.5,
        preview.CropSettings(), torch.device("cpu"),
    )  # fmt: skip
    mask = result.relevance[:, 0] >= 0.5
    picked = [int(name[len("frame_") : -len(".png")]) for name in views.names]
    ious = {}
    for name, paths in scene.mask_paths.items():
        truth = torch.from_numpy(np.stack([np.asarray(Image.open(paths[i])) > 127 for i in picked]))
        ious[name] = float((mask & truth).sum() / (mask | truth).sum())
    named = instruction.split()[2]
    assert max(ious, key=ious.get) == named, ious
    sheet_masks = preview.sheet_rows(views, [result], (0.5,))["mask 0.5"]
    assert np.array_equal(sheet_masks[..., 0] > 0, mask.numpy())  # the sheet shows exactly these masks


def test_generated_scene_writes_every_output_for_two_instructions(scene, tmp_path, capsys):
    out = tmp_path / "preview"
    args = ["--data", str(scene.output_dir), "--instruction", "make the cube blue", "make the cone red"]
    args += ["--output-dir", str(out), "--num-views", "all", "--editor-model", str(TOY_EDITOR_DIR), *FAST]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "preview.json", "preview.md"]
    record = json.loads((out / "preview.json").read_text())
    assert record["views"] == [f"frame_{i:05d}.png" for i in range(12)]
    assert record["num_train_views"] == 11 and record["updates"] == 30 and record["iqr_ratio"] == 3.5
    for instruction in ("make the cube blue", "make the cone red"):
        entry = record["instructions"][instruction]
        assert set(entry["mask_fractions"]) == set(record["views"])
        fractions = [entry["mean_mask_fraction"][t] for t in ("0.3", "0.5", "0.7")]
        assert fractions == sorted(fractions, reverse=True) and 0 < fractions[1] < 1
        cost = entry["cost"]
        expected = (
            cost["updates"] * cost["seconds_per_update_full_frame"]
            + cost["relevance_s_all_views"]
            + cost["nerf_iterations_s"]
        )
        assert cost["total_s_full_frame"] == pytest.approx(expected) and cost["total_s"] == pytest.approx(
            expected
        )
        assert cost["nerf_iterations_s"] == pytest.approx(300 * record["nerf"]["s_per_iteration"])
    markdown = (out / "preview.md").read_text()
    assert '"make the cone red"' in markdown and "| frame_00011.png |" in markdown
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    rows = 1 + 2 * (1 + 3)  # the views, then per instruction its relevance and 3 masks
    assert sheet.shape[0] == rows * 64 * 2  # 64-pixel views scaled twice (to at most 160 px)
    assert "preview written to" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (FERN / "images_2").is_dir(), reason=f"LLFF fern not found at {FERN}")
def test_llff_fern_writes_every_output_at_its_downscaled_size(tmp_path):
    out = tmp_path / "fern-preview"
    args = ["--data", str(FERN), "--instruction", "make the fern autumn red", "--output-dir", str(out)]
    args += ["--num-views", "2", "--downscale-factor", "2", "--editor-model", str(TOY_EDITOR_DIR), *FAST]
    args += ["--edit-steps", "2"]
    assert main(args) == 0
    record = json.loads((out / "preview.json").read_text())
    assert (
        record["image_size"] == [189, 252] and record["num_frames"] == 20 and record["num_train_views"] == 18
    )
    assert record["views"] == ["frame_00000.png", "frame_00019.png"]
    cost = record["instructions"]["make the fern autumn red"]["cost"]
    assert cost["seconds_per_update_full_frame"] > record["nerf"]["render_s_per_view"] > 0
    assert (out / "preview.md").read_text().count("| frame_000") == 2
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.height == 5 * 120  # view, relevance and 3 masks; 252x189 views shrunk to 160x120


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "missing"}, "is not a folder"),
        ({"--data": "empty"}, "neither transforms.json nor PNG/JPEG images"),
        ({"--instruction": " "}, "instruction is empty"),
        ({"--taus": "1.5"}, "--taus must be"),
        ({"--num-views": "0"}, "--num-views must be at least 1"),
        ({"--edit-every": "0"}, "--edit-every must be at least 1"),
        ({"--output-dir": "taken"}, "already exists and is not empty"),
        ({"--editor-model": "./no-such-dir"}, "no such folder"),
        ({"--max-megapixels": "0.001"}, "pass --downscale-factor"),
    ],
)
def test_bad_inputs_fail_in_one_line_and_write_nothing(scene, tmp_path, capsys, change, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("user data")
    options = {"--data": str(scene.output_dir), "--instruction": "make the cube blue"}
    options |= {"--output-dir": "new", "--editor-model": str(TOY_EDITOR_DIR)}
    options |= {k: (str(tmp_path / v) if k in ("--data", "--output-dir") else v) for k, v in change.items()}
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main([arg for item in options.items() for arg in item] + FAST) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("relevance-preview: error: ") and message in err and "\n" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "taken" / "keep.txt").read_text() == "user data"


def test_a_failure_while_writing_leaves_no_folder(scene, tmp_path, monkeypatch, capsys):
    """The output folder is built beside its destination and renamed into place only when complete."""

    def broken(record):
        raise OSError("disk full")

    monkeypatch.setattr(preview, "markdown_report", broken)
    args = ["--data", str(scene.output_dir), "--instruction", "make the cube blue", "--num-views", "2"]
    args += ["--output-dir", str(tmp_path / "out"), "--editor-model", str(TOY_EDITOR_DIR), *FAST]
    assert main(args) == 2
    assert "nothing was written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
