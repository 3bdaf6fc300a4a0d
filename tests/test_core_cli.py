"""`relevance-edit` on the tiny InstructPix2Pix: outputs, and one-line errors that overwrite nothing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from relevance_nerf2nerf.cli.edit import main


@pytest.fixture
def rgba_image(tmp_path):
    """A 21x18 RGBA input (sides not multiples of the latent factor)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (21, 18, 4), dtype=np.uint8), "RGBA").save(path)
    return path


def test_happy_path_writes_every_output(tiny_ip2p_dir, rgba_image, tmp_path, capsys):
    out = tmp_path / "results" / "edited.png"
    args = ["--image", str(rgba_image), "--instruction", "make the ball blue", "--output", str(out)]
    args += ["--model", str(tiny_ip2p_dir), "--steps", "3", "--mask-threshold", "0.4", "--compare"]
    assert main(args) == 0
    expected = {
        "edited.png": (21, 18, 3),
        "edited_relevance.png": (21, 18, 3),
        "edited_mask.png": (21, 18),
        "edited_compare.png": (21, 4 * 18, 3),
    }
    for name, shape in expected.items():
        assert np.asarray(Image.open(out.parent / name)).shape == shape
    record = json.loads((out.parent / "edited.json").read_text())
    assert record["mask_threshold"] == 0.4 and record["steps"] == 3 and record["device"] == "cpu"
    assert set(record["timings"]) == {"load_s", "edit_s", "plain_ip2p_s"}
    first = np.asarray(Image.open(out)).copy()
    assert main(args) == 2  # existing outputs are refused without --overwrite, and left as they were
    assert np.array_equal(np.asarray(Image.open(out)), first)
    assert main([*args, "--overwrite"]) == 0  # same seed, same result
    assert np.array_equal(np.asarray(Image.open(out)), first)
    assert "edited.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--image": "missing.png"}, "does not exist"),
        ({"--instruction": " "}, "instruction is empty"),
        ({"--mask-threshold": "1.5"}, "tau"),
        ({"--model": "no-such-dir/"}, "does not exist"),
        ({"--output": "out.gif"}, ".png"),
    ],
)
def test_errors_are_one_line_exit_2_and_overwrite_nothing(rgba_image, tmp_path, capsys, change, message):
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")
    options = {"--image": str(rgba_image), "--instruction": "make it red", "--output": str(out)}
    options.update(
        {k: (str(tmp_path / v) if k in ("--image", "--model", "--output") else v) for k, v in change.items()}
    )
    assert main([*(item for pair in options.items() for item in pair), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relevance-edit: error: ") and err.count("\n") == 1 and message in err
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


def test_console_script_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = [sys.executable, "-c", "from relevance_nerf2nerf.cli.edit import entrypoint; entrypoint()"]
    args = ["--image", str(tmp_path / "nope.png"), "--instruction", "x", "--output", str(tmp_path / "o.png")]
    proc = subprocess.run(script + args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope.png' does not exist" in proc.stderr
