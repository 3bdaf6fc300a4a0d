"""``benchmarks/real_scene_table1.py`` end to end on the LLFF fern with the bundled toy editor and a tiny
local CLIP (plumbing only: these weights measure nothing), and bad input answered in one line before anything
is written.

The fern is used at 1/16 of its 504x378 (31x23 px, ``images_16`` built from ``images_2`` in a temporary copy
of the dataset), so the three methods, 18 views each, run in well under a minute on one CPU core.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from benchmark_scripts import load
from PIL import Image

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR

SHARED_FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff-fern"  # as test_nerf_real_data
FERN = Path(os.environ.get("RELEVANCE_FERN_DIR", SHARED_FERN))
FACTOR, WIDTH, HEIGHT = 16, 31, 23  # 504x378 / 16, as nerfstudio rounds the cameras down

pytestmark = pytest.mark.skipif(
    not (FERN / "images_2").is_dir(), reason=f"LLFF fern not found at {FERN} (set RELEVANCE_FERN_DIR)"
)


@pytest.fixture(scope="module")
def table1():
    """The script as a module (benchmarks/ is not a package)."""
    return load("real_scene_table1")


@pytest.fixture(scope="module")
def small_fern(tmp_path_factory) -> Path:
    """The fern's transforms.json and images_16/ (Lanczos from images_2/); the shared folder is untouched."""
    folder = tmp_path_factory.mktemp("fern") / "llff-fern"
    (folder / f"images_{FACTOR}").mkdir(parents=True)
    shutil.copy(FERN / "transforms.json", folder)
    for path in sorted((FERN / "images_2").glob("*.png")):
        small = Image.open(path).resize((WIDTH, HEIGHT), Image.LANCZOS)
        small.save(folder / f"images_{FACTOR}" / path.name)
    return folder


def _argv(data: Path, out: Path, clip: Path, changes: dict[str, str | None] | None = None) -> list[str]:
    flags = {
        "--data": str(data),
        "--instruction": "make the fern autumn-coloured",
        "--input-caption": "a photo of a fern",
        "--output-caption": "a photo of an autumn fern",
        "--output-dir": str(out),
        "--base-method": "nerfacto-tiny",
        "--edit-method": "relevance-nerf2nerf-tiny",
        "--base-iterations": "20",
        "--edit-iterations": "4",
        "--edit-every": "2",
        "--edit-steps": "4",
        "--ip2p-steps": "4",
        "--downscale-factor": str(FACTOR),
        "--editor-model": str(TOY_EDITOR_DIR),
        "--clip-model": str(clip),
        "--device": "cpu",
    }
    for flag, value in (changes or {}).items():
        flags[f"--{flag.replace('_', '-')}"] = value
    return [part for flag, value in flags.items() if value is not None for part in (flag, value)]


@pytest.mark.slow
def test_three_methods_on_the_fern_write_table1(table1, small_fern, tiny_clip_dir, tmp_path):
    from relevance_nerf2nerf.cli.eval import SceneEval, check_scene_inputs

    out = tmp_path / "table1-fern"
    assert table1.main(_argv(small_fern, out, tiny_clip_dir)) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == ["table1-fern"]  # no staging folder left
    from nerfstudio.utils import writer

    assert writer.EVENT_WRITERS == []  # none left logging into the renamed staging folder (later runs would)
    for name in ("table1.json", "table1.md", "contact_sheet.png", "logs/base.log", "logs/ours.log"):
        assert (out / name).is_file(), name
    result = json.loads((out / "table1.json").read_text())
    assert list(result["methods"]) == ["IP2P", "IN2N", "Ours"]
    assert len(result["views"]) == 18 and result["views"] == sorted(result["views"])  # training views
    for method, row in result["methods"].items():
        for column, key in table1.COLUMNS.items():
            if column == "NIQE":
                assert row[key] == "unavailable"
            else:
                assert isinstance(row[key], float) and math.isfinite(row[key]), (method, column, row[key])
        assert row["clip_model"] == str(tiny_clip_dir)
    assert result["paper_table1"]["Ours"]["Edit PSNR"] == 31.01
    assert result["note"] == table1.NOT_THE_PAPERS  # the toy editor's numbers are not the paper's
    markdown = (out / "table1.md").read_text()
    for row in (
        "| IP2P |",
        "| IN2N |",
        "| Ours |",
        "| Ours (paper) | 0.2673 | 0.9876 | 0.8754 | 0.8910 | 31.01",
    ):
        assert row in markdown, row

    sheet = Image.open(out / "contact_sheet.png")  # 6 rows (captures ... relevance), 6 views, scale 3
    assert sheet.size == (120 + 6 * WIDTH * 3, 6 * HEIGHT * 3)

    # the runs are where table1.json says, and relevance-eval scene accepts them (their base found)
    ours = Path(result["runs"]["Ours"]) / "config.yml"
    assert ours.is_relative_to(out.resolve()) and ours.is_file()
    command = SceneEval(edited_config=ours, output_dir=tmp_path / "eval", input_caption="a photo of a fern",
                        output_caption="an autumn fern", clip_model=str(tiny_clip_dir))  # fmt: skip
    inputs = check_scene_inputs(command)
    assert inputs.base_path == Path(result["runs"]["base"]) / "config.yml" and inputs.tau == 0.5


def _one_line_error(capsys, *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("real_scene_table1: error:"), err
    for word in words:
        assert word in err[0], err[0]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no output caption", ["--output-caption", "empty"]),
        ("no transforms.json", ["transforms.json", "--data"]),
        ("missing downscaled images", ["images_4", "--downscale-factor"]),
        ("output dir not empty", ["--output-dir", "already exists"]),
        ("editor folder without weights", ["InstructPix2Pix"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(table1, small_fern, tmp_path, capsys, case, words):
    out, clip = tmp_path / "work" / "out", tmp_path / "clip-not-needed"
    changes: dict[str, str | None] = {}
    if case == "no output caption":
        changes["output_caption"] = None
    elif case == "no transforms.json":
        changes["data"] = str(shutil.copytree(small_fern / f"images_{FACTOR}", tmp_path / "images-only"))
    elif case == "missing downscaled images":
        changes["downscale_factor"] = "4"
    elif case == "output dir not empty":
        out.mkdir(parents=True)
        (out / "mine.txt").write_text("the user's")
    else:
        (tmp_path / "not-an-editor").mkdir()
        changes["editor_model"] = str(tmp_path / "not-an-editor")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    assert table1.main(_argv(small_fern, out, clip, changes)) == 2

    _one_line_error(capsys, *words)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert case != "output dir not empty" or (out / "mine.txt").read_text() == "the user's"
