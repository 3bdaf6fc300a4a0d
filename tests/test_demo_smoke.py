"""`relevance-demo`: a shortened end-to-end run writes every artefact; bad input fails before training."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from relevance_nerf2nerf.cli.demo import main, target_of
from relevance_nerf2nerf.errors import InvalidInputError


def test_instruction_must_name_an_object_of_the_scene():
    assert target_of("Make the cube BLUE", ["cone", "cube"]) == ("cube", "blue")
    assert target_of("turn the cone into gold", ["cone"]) == ("cone", None)
    with pytest.raises(InvalidInputError, match="no sphere in it"):
        target_of("make the sphere blue", ["cone", "cube"])
    with pytest.raises(InvalidInputError, match="names no object"):
        target_of("make it blue", ["cone"])


def test_demo_reports_bad_input_in_one_line_without_training(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--output-dir", str(out), "--instruction", "make the cylinder blue", "--num-views", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cylinder" in err[0] and "--scene-seed" in err[0]
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_shortened_demo_writes_every_artefact(tmp_path):
    out = tmp_path / "demo"
    short = {"--num-views": "6", "--base-iterations": "20", "--edit-iterations": "10"}
    args = ["--output-dir", str(out), *(item for pair in short.items() for item in pair)]
    assert main(args) == 0
    [out] = out.iterdir()  # the run's own fresh sub-folder
    record = json.loads((out / "metrics.json").read_text())
    metrics = record["metrics"]
    assert metrics["object"] == "cube" and metrics["target_colour"] == "blue"
    for key in ("psnr_outside_object_after_vs_before", "object_colour_change", "relevance_iou_with_object"):
        assert isinstance(metrics[key], float)
    assert set(record["wall_time_s"]) == {
        "generate scene", "train base (nerfacto-tiny)", "edit (relevance-nerf2nerf-tiny)", "render + measure"
    }  # fmt: skip
    for name in ("before.gif", "after.gif", "relevance.gif", "input_before_after_relevance.gif"):
        with Image.open(out / name) as gif:
            assert gif.n_frames == 6 and gif.size[1] == 64 * 3
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (6 * 64 * 3, 4 * 64 * 3)
    edit_run = out / "runs" / "demo" / "relevance-nerf2nerf-tiny" / "edit"
    assert (edit_run / "config.yml").is_file() and list((edit_run / "nerfstudio_models").glob("step-*.ckpt"))
    assert (out / "logs" / "base.log").is_file() and (out / "logs" / "edit.log").is_file()
