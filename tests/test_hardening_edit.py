"""``relevance-edit``: no output may replace an input and outputs appear whole or not at all; every accepted
``--steps`` works; very large images are refused or downscaled."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from folder_state import snapshot
from PIL import Image

from relevance_nerf2nerf.cli import edit
from relevance_nerf2nerf.diffusion import images


def write_png(path: Path, size: tuple[int, int] = (12, 10), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def run_edit(capsys, image: Path, output: Path, *extra: str) -> tuple[int, str]:
    args = ["--image", str(image), "--instruction", "make it red", "--output", str(output), *extra]
    code = edit.main(args)
    return code, capsys.readouterr().err


def assert_one_line(err: str, *words: str) -> None:
    assert err.startswith("relevance-edit: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


# --- outputs never replace inputs -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image_name", "output_name", "clash"),
    [
        ("photo_mask.png", "photo.png", "mask"),
        ("photo_relevance.png", "photo.png", "relevance"),
        ("photo_compare.png", "photo.png", "compare"),
        ("photo.png", "photo.png", "edited"),
        ("sub/../photo.png", "photo.png", "edited"),
    ],
)
def test_no_output_may_be_the_input(tmp_path, capsys, image_name, output_name, clash):
    d = tmp_path / "d"
    write_png(d / Path(image_name).name)
    (d / "sub").mkdir()
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, d / image_name, d / output_name, "--compare")
    assert code == 2
    assert_one_line(err, f"the {clash} output", "--image", "--output")
    assert snapshot(tmp_path) == before


def test_symlinks_and_hard_links_to_the_input_are_caught(tmp_path, capsys):
    d = tmp_path / "d"
    image = write_png(d / "photo.png")
    (d / "out_mask.png").symlink_to(image)
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, image, d / "out.png")
    assert code == 2 and "the mask output" in err
    (d / "out_mask.png").unlink()
    os.link(image, d / "out_relevance.png")
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, image, d / "out.png")
    assert code == 2 and "the relevance output" in err
    assert snapshot(tmp_path) == before


def test_outputs_inside_a_local_model_directory_are_refused(tmp_path, capsys):
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    image = write_png(tmp_path / "photo.png")
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, image, model / "model_index.png", "--model", str(model))
    assert code == 2
    assert_one_line(err, "--model")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("directory", ["out_mask.png", "out.json", "out_relevance.png", "out.png"])
def test_an_output_named_like_an_existing_directory_is_refused_up_front(tmp_path, capsys, directory):
    image = write_png(tmp_path / "photo.png")
    (tmp_path / directory).mkdir()
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, image, tmp_path / "out.png")
    assert code == 2
    assert_one_line(err, "is an existing directory", "--output")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("output", ["afile/x.png", "afile/deeper/x.png"])
def test_output_inside_a_file_is_refused_before_the_model_loads(tmp_path, capsys, output):
    image = write_png(tmp_path / "photo.png")
    (tmp_path / "afile").write_text("keep")
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, image, tmp_path / output, "--model", str(tmp_path / "not-loaded"))
    assert code == 2
    assert_one_line(err, "afile", "--output")
    assert snapshot(tmp_path) == before


def test_outputs_appear_whole_or_not_at_all(tiny_ip2p_dir, tmp_path, capsys, monkeypatch):
    image = write_png(tmp_path / "photo.png", size=(8, 8))
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    args = ("--model", str(tiny_ip2p_dir), "--steps", "1", "--compare", "--overwrite")
    real_save = images.save_image

    def failing_save(array, path):
        if Path(path).name.startswith(".out_compare"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(array, path)

    before = snapshot(tmp_path)
    monkeypatch.setattr(images, "save_image", failing_save)
    code, err = run_edit(capsys, image, out, *args)  # a full disk: one line, exit 2
    assert code == 2
    assert_one_line(err, "No space left on device", "nothing was written")
    assert snapshot(tmp_path) == before  # no output replaced, no temporary file left

    monkeypatch.setattr(images, "save_image", real_save)
    code, _ = run_edit(capsys, image, out, *args)
    assert code == 0
    names = {"photo.png", "out.png", "out_mask.png", "out_relevance.png", "out_compare.png", "out.json"}
    assert {p.name for p in tmp_path.iterdir()} == names
    assert Image.open(out).size == (8, 8) and oct(out.stat().st_mode & 0o777) != "0o600"


# --- every accepted step count works ----------------------------------------------------------------
@pytest.mark.parametrize("num_train_timesteps", [1000, 50, 7])
@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("start_noise", [1.0, 0.98, 0.5, 0.02])
def test_every_step_count_gives_trained_descending_timesteps(num_train_timesteps, steps_offset, start_noise):
    from relevance_nerf2nerf.diffusion.sampler import ddim_timesteps

    t = num_train_timesteps
    for steps in sorted({1, 2, 3, t // 2, t - 1, t}):
        grid = ddim_timesteps(steps, start_noise, t, steps_offset)
        assert 0 <= min(grid) and max(grid) <= t - 1, (steps, grid[:3])
        assert grid == sorted(set(grid), reverse=True), (steps, grid[:5])
        if start_noise >= 1.0:
            assert len(grid) == steps


def test_pure_noise_grid_is_diffusers_ddim_wherever_that_works_and_shifted_at_n_equal_t():
    from diffusers import DDIMScheduler

    from relevance_nerf2nerf.diffusion.sampler import ddim_timesteps

    scheduler = DDIMScheduler(num_train_timesteps=1000, steps_offset=1)
    for steps in (1, 2, 3, 7, 100, 500, 999):
        scheduler.set_timesteps(steps)
        assert ddim_timesteps(steps, 1.0, 1000, 1) == scheduler.timesteps.tolist()
    scheduler.set_timesteps(1000)
    assert scheduler.timesteps[0] == 1000  # diffusers' own DDIM indexes past its 1000 alphas here
    assert ddim_timesteps(1000, 1.0, 1000, 1) == list(range(999, -1, -1))


@pytest.mark.parametrize("steps", [0, 11])
def test_step_counts_beyond_the_models_timesteps_are_refused(steps):
    from relevance_nerf2nerf.diffusion.sampler import ddim_timesteps
    from relevance_nerf2nerf.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"\[1, 10\]"):
        ddim_timesteps(steps, 1.0, 10, 1)


@pytest.fixture(scope="module")
def short_schedule_model(tiny_ip2p_dir, tmp_path_factory):
    """The tiny IP2P with a 20-timestep schedule, so N = T is cheap to run end to end."""
    import json
    import shutil

    model = shutil.copytree(tiny_ip2p_dir, tmp_path_factory.mktemp("short") / "model")
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "num_train_timesteps": 20}))
    return model


@pytest.mark.parametrize("steps", ["20", "21"])
def test_cli_steps_at_the_models_boundary(short_schedule_model, tmp_path, capsys, steps):
    """N = T (what the validator's 1000 is for IP2P) edits from pure noise; N = T + 1 is one line."""
    image = write_png(tmp_path / "photo.png", size=(4, 4))
    args = ("--model", str(short_schedule_model), "--steps", steps, "--mask-threshold", "0")
    code, err = run_edit(capsys, image, tmp_path / "out.png", *args)
    if steps == "20":
        assert code == 0, err
        assert Image.open(tmp_path / "out.png").size == (4, 4)
    else:
        assert code == 2
        assert_one_line(err, "denoising steps", "[1, 20]", "21")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_validator_accepts_exactly_what_ip2p_can_run():
    """The settings validator's upper bound is IP2P's num_train_timesteps (1000): its grid is valid."""
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.diffusion.sampler import ddim_timesteps
    from relevance_nerf2nerf.errors import InvalidInputError
    from relevance_nerf2nerf.toy_editor.build import SD_SCHEDULER_CONFIG

    validate_edit_settings("x", num_steps=1000)
    with pytest.raises(InvalidInputError):
        validate_edit_settings("x", num_steps=1001)
    t, offset = SD_SCHEDULER_CONFIG["num_train_timesteps"], SD_SCHEDULER_CONFIG["steps_offset"]
    assert max(ddim_timesteps(1000, 1.0, t, offset)) == t - 1


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("inf"), float("nan")])
def test_the_2d_validator_refuses_the_iqr_ratios_scenes_refuse(ratio):
    """One rule for the IQR ratio (``check_iqr_ratio``): 0 would saturate every value above the upper
    quartile, so the 2D editor refuses it in one line as the scene pipeline and the demo do."""
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.errors import InvalidInputError

    validate_edit_settings("x", iqr_ratio=1e-3)
    with pytest.raises(InvalidInputError, match="IQR ratio must be a positive number") as info:
        validate_edit_settings("x", iqr_ratio=ratio)
    assert "\n" not in str(info.value)


# --- size guard ----------------------------------------------------------------------------------------
def test_an_image_above_the_cpu_limit_is_refused_before_the_model_loads(tmp_path, capsys):
    """1001x1000 is just above the 1 MP CPU default; the header alone decides (no decoding, no model)."""
    big = tmp_path / "big.png"
    Image.new("RGB", (1001, 1000)).save(big)
    before = snapshot(tmp_path)
    code, err = run_edit(capsys, big, tmp_path / "out.png", "--device", "cpu", "--model", "./not-loaded")
    assert code == 2
    assert_one_line(err, "1001x1000", "1 MP", "--downscale", "--max-megapixels", "cpu")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("limit", ["0", "-1", "nan"])
def test_max_megapixels_must_be_positive(tmp_path, capsys, limit):
    image = write_png(tmp_path / "photo.png")
    code, err = run_edit(capsys, image, tmp_path / "out.png", "--max-megapixels", limit)
    assert code == 2
    assert_one_line(err, "--max-megapixels")


def test_raised_limit_passes_the_guard_and_downscale_edits_within_the_limit(tiny_ip2p_dir, tmp_path, capsys):
    image = write_png(tmp_path / "photo.png", size=(20, 10))  # 200 pixels
    small = ("--model", str(tiny_ip2p_dir), "--steps", "1", "--max-megapixels", "0.0001")  # 100 pixels
    code, err = run_edit(capsys, image, tmp_path / "out.png", *small)
    assert code == 2
    assert_one_line(err, "20x10", "--downscale", "14x7")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    code, err = run_edit(capsys, image, tmp_path / "out.png", *small, "--downscale")
    assert code == 0, err
    for name in ("out.png", "out_mask.png", "out_relevance.png"):
        assert Image.open(tmp_path / name).size == (14, 7)
    code, err = run_edit(capsys, image, tmp_path / "again.png", *small[:4], "--max-megapixels", "0.0002")
    assert code == 0 and Image.open(tmp_path / "again.png").size == (20, 10)


def test_fit_megapixels_keeps_the_aspect_and_the_limit():
    for height, width, limit in [(4000, 6000, 1.0), (1000, 1001, 1.0), (3, 100000, 0.01), (7, 9, 1.0)]:
        fit_h, fit_w = images.fit_megapixels(height, width, limit)
        assert fit_h * fit_w <= max(limit * 1e6, 1) and fit_h <= height and fit_w <= width
        if height * width <= limit * 1e6:
            assert (fit_h, fit_w) == (height, width)
        elif min(fit_h, fit_w) >= 8:
            assert abs(fit_w / fit_h - width / height) < 0.01 * width / height + 1 / fit_h
