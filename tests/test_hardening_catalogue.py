"""A catalogue of bad inputs: every case must end with exit code 2 and ONE line
``<command>: error: <what to do>`` on stderr (no traceback), and leave the folder exactly as it was (nothing
written, changed or deleted, no partial output). All cases fail before a model loads, so they are fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from folder_state import snapshot
from PIL import Image

from relevance_nerf2nerf.cli import demo, edit, scene


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A user's folder: a photo, earlier results, a text file, a folder, a local 'model' without weights."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    Image.new("RGB", (1001, 1000)).save(tmp_path / "huge.png")  # above the 1 MP CPU default
    for name in ("out.png", "out_mask.png", "out_relevance.png", "out.json"):
        (tmp_path / name).write_bytes(b"an earlier result " + name.encode())
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep")
    (tmp_path / "weights" / "vae").mkdir(parents=True)  # a model folder without unet/
    (tmp_path / "res_mask.png").mkdir()  # a folder named like a side output
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "keep").write_text("x")
    return tmp_path


def _edit_args(root: Path, change: dict[str, str]) -> list[str]:
    options = {
        "--image": "photo.png",
        "--instruction": "make the ball blue",
        "--output": "out.png",
        "--device": "cpu",
        "--model": "weights-never-loaded/",
    }
    options.update(change)
    paths = ("--image", "--output", "--model")
    args = [x for k, v in options.items() for x in (k, str(root / v) if k in paths and v else v)]
    return [*args, "--overwrite"]  # the earlier results may be replaced: the error under test comes first


EDIT_CASES = {
    "image missing": ({"--image": "missing.png"}, "does not exist"),
    "image is a folder": ({"--image": "folder"}, "is a directory"),
    "image is not an image": ({"--image": "notes.txt"}, "cannot read image"),
    "image above the size guard": ({"--image": "huge.png"}, "--downscale"),
    "instruction empty": ({"--instruction": ""}, "instruction is empty"),
    "instruction blank": ({"--instruction": "   "}, "instruction is empty"),
    "tau above 1": ({"--mask-threshold": "1.5"}, "tau"),
    "tau negative": ({"--mask-threshold": "-0.1"}, "tau"),
    "tau nan": ({"--mask-threshold": "nan"}, "tau"),
    "text guidance negative": ({"--text-guidance": "-1"}, "text guidance"),
    "text guidance huge": ({"--text-guidance": "1e9"}, "text guidance"),
    "text guidance inf": ({"--text-guidance": "inf"}, "text guidance"),
    "image guidance nan": ({"--image-guidance": "nan"}, "image guidance"),
    "steps 0": ({"--steps": "0"}, "steps"),
    "steps 1001": ({"--steps": "1001"}, "steps"),
    "steps negative": ({"--steps": "-5"}, "steps"),
    "t_rel 0": ({"--t-rel": "0"}, "t_rel"),
    "t_rel above 1": ({"--t-rel": "1.5"}, "t_rel"),
    "output gif": ({"--output": "out.gif"}, ".png"),
    "output without suffix": ({"--output": "out"}, ".png"),
    "output is the input": ({"--output": "photo.png"}, "--image"),
    "mask output is the input": ({"--image": "out_mask.png", "--output": "out.png"}, "the mask output"),
    "relevance output is the input": ({"--image": "out_relevance.png"}, "the relevance output"),
    "output is a folder": ({"--output": "folder"}, ".png"),
    "output named like a folder": ({"--output": "folder.png"}, None),
    "side output is a folder": ({"--output": "res.png"}, "existing directory"),
    "output folder is a file": ({"--output": "afile/x.png"}, "afile"),
    "output deep inside a file": ({"--output": "afile/a/b/x.png"}, "afile"),
    "output inside the model": ({"--model": "weights", "--output": "weights/vae/x.png"}, "--model"),
    "model folder without unet": ({"--model": "weights"}, "unet"),
    "model path missing": ({"--model": "./no-such-model"}, "does not exist"),
    "unknown device": ({"--device": "tpu"}, "device"),
    "seed too large": ({"--seed": "99999999999999999999"}, "--seed"),
    "seed negative": ({"--seed": "-1"}, "--seed"),
    "max megapixels 0": ({"--max-megapixels": "0"}, "--max-megapixels"),
    "max megapixels nan": ({"--max-megapixels": "nan"}, "--max-megapixels"),
}
if not torch.cuda.is_available():
    EDIT_CASES["cuda without a GPU"] = ({"--device": "cuda"}, "CUDA is not available")


@pytest.mark.parametrize("case", sorted(EDIT_CASES))
def test_relevance_edit_bad_input(workdir, capsys, case):
    change, message = EDIT_CASES[case]
    if case == "output named like a folder":
        (workdir / "folder.png").mkdir()
        message = "existing directory"
    before = snapshot(workdir)
    assert edit.main(_edit_args(workdir, change)) == 2
    _assert_one_line(capsys.readouterr().err, "relevance-edit", message)
    assert snapshot(workdir) == before


def test_relevance_edit_refuses_to_replace_earlier_results_without_overwrite(workdir, capsys):
    before = snapshot(workdir)
    args = _edit_args(workdir, {})[:-1]  # without --overwrite
    assert edit.main(args) == 2
    _assert_one_line(capsys.readouterr().err, "relevance-edit", "already exists: pass --overwrite")
    assert snapshot(workdir) == before


DEMO_CASES = {
    "instruction names no object": (["--instruction", "make the pyramid blue"], "names no object"),
    "object not in the scene": (["--instruction", "make the cylinder blue"], "--scene-seed"),
    "instruction empty": (["--instruction", ""], "instruction is empty"),
    "tau 5": (["--mask-threshold", "5"], "tau"),
    "guidance nan": (["--text-guidance", "nan"], "text guidance"),
    "IQR ratio zero": (["--relevance-iqr-ratio", "0"], "--relevance-iqr-ratio"),
    "IQR ratio infinite": (["--relevance-iqr-ratio", "inf"], "--relevance-iqr-ratio"),
    "width too small": (["--width", "4"], "too small"),
    "views above the size guard": (["--width", "1500", "--height", "1000"], "--width"),
    "one view": (["--num-views", "1"], "--num-views"),
    "no objects": (["--num-objects", "0"], "num_objects"),
    "zero base iterations": (["--base-iterations", "0"], "--base-iterations"),
    "seed too large": (["--seed", "99999999999999999999"], "--seed"),
    "missing editor folder": (["--editor-model", "./nope"], "--editor-model"),
    "not an editing method": (["--edit-method", "nerfacto"], "--edit-method"),
    "output dir is a file": (["--output-dir", "afile"], "--output-dir"),
    "output dir inside a file": (["--output-dir", "afile/demo"], "--output-dir"),
}


@pytest.mark.parametrize("case", sorted(DEMO_CASES))
def test_relevance_demo_bad_input(workdir, capsys, case):
    flags, message = DEMO_CASES[case]
    flags = [str(workdir / f) if i and flags[i - 1] == "--output-dir" else f for i, f in enumerate(flags)]
    if "--output-dir" not in flags:
        flags += ["--output-dir", str(workdir)]  # a folder with the user's files, logs/ among them
    before = snapshot(workdir)
    assert demo.main(flags) == 2
    _assert_one_line(capsys.readouterr().err, "relevance-demo", message)
    assert snapshot(workdir) == before


SCENE_CASES = {
    "output dir is a file": (["--output-dir", "afile"], "not a directory"),
    "too many objects": (["--num-objects", "9"], "num_objects"),
    "width too small": (["--width", "2"], "too small"),
    "no views": (["--num-views", "0"], "num_views"),
    "supersample 0": (["--supersample", "0"], "supersample"),
}


@pytest.mark.parametrize("case", sorted(SCENE_CASES))
def test_relevance_scene_bad_input(workdir, capsys, case):
    flags, message = SCENE_CASES[case]
    if "--output-dir" in flags:
        flags = [flags[0], str(workdir / flags[1]), *flags[2:]]
    else:
        flags = ["--output-dir", str(workdir / "new-scene"), *flags]
    before = snapshot(workdir)
    assert scene.main(flags) == 2
    _assert_one_line(capsys.readouterr().err, "relevance-scene", message)
    assert snapshot(workdir) == before


def _assert_one_line(err: str, program: str, message: str | None) -> None:
    assert err.startswith(f"{program}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if message is not None:
        assert message in err, err
