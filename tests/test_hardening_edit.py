"""Issue 9 on ``relevance-edit``: no output may replace an input (defect 2) and outputs appear whole or not at
all; every accepted ``--steps`` works (defect 3); very large images are refused or downscaled (defect 7)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relevance_nerf2nerf.cli import edit
from relevance_nerf2nerf.diffusion import images


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash ('dir' for folders, 'link' for symlinks) of everything under root."""
    return {
        str(p.relative_to(root)): "link" if p.is_symlink() else "dir" if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }  # fmt: skip


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


# --- defect 2: outputs never replace inputs ------------------------------------------------------------
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
    args = ("--model", str(tiny_ip2p_dir), "--steps", "1", "--compare")
    real_save = images.save_image

    def failing_save(array, path):
        if Path(path).name.startswith(".out_compare"):
            raise OSError("disk full")
        return real_save(array, path)

    before = snapshot(tmp_path)
    monkeypatch.setattr(images, "save_image", failing_save)
    with pytest.raises(OSError, match="disk full"):
        run_edit(capsys, image, out, *args)
    assert snapshot(tmp_path) == before  # no output replaced, no temporary file left

    monkeypatch.setattr(images, "save_image", real_save)
    code, _ = run_edit(capsys, image, out, *args)
    assert code == 0
    names = {"photo.png", "out.png", "out_mask.png", "out_relevance.png", "out_compare.png", "out.json"}
    assert {p.name for p in tmp_path.iterdir()} == names
    assert Image.open(out).size == (8, 8) and oct(out.stat().st_mode & 0o777) != "0o600"
