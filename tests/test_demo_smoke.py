"""`relevance-demo`: a shortened end-to-end run writes every artefact; bad input fails before training."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
import yaml
from PIL import Image

from relevance_nerf2nerf.assets import TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.cli.demo import (
    EXACT_CAPTURE_ARGS,
    DemoCommand,
    edit_iqr_ratio,
    main,
    target_of,
)
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.evaluation.sheets import LABEL_WIDTH


def test_instruction_must_name_an_object_of_the_scene():
    assert target_of("Make the cube BLUE", ["cone", "cube"]) == ("cube", "blue")
    assert target_of("turn the cone into gold", ["cone"]) == ("cone", None)
    with pytest.raises(InvalidInputError, match="no sphere in it"):
        target_of("make the sphere blue", ["cone", "cube"])
    with pytest.raises(InvalidInputError, match="names no object"):
        target_of("make it blue", ["cone"])


def test_edit_iqr_ratio_defaults_to_the_editors_own():
    """TOY_EDITOR_IQR_RATIO with the bundled toy editor, the pipeline's 2 with any other, and always what the
    user passed."""
    assert edit_iqr_ratio(DemoCommand()) == TOY_EDITOR_IQR_RATIO == 3.5
    assert edit_iqr_ratio(DemoCommand(editor_model="timbrooks/instruct-pix2pix")) == SCENE_IQR_RATIO == 2.0
    assert edit_iqr_ratio(DemoCommand(relevance_iqr_ratio=1.5)) == 1.5
    assert edit_iqr_ratio(DemoCommand(editor_model="/my/ip2p", relevance_iqr_ratio=4.0)) == 4.0


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
    args = ["--output-dir", str(out), "--compare", *(item for pair in short.items() for item in pair)]
    assert main(args) == 0
    [out] = out.iterdir()  # the run's own fresh sub-folder
    record = json.loads((out / "metrics.json").read_text())
    metrics = record["metrics"]
    assert metrics["object"] == "cube" and metrics["target_colour"] == "blue"
    # both methods, from the same base run, each with the colour change of every object it was not told about
    assert set(record["methods"]) == {"ours (tau 0.5)", "Instruct-NeRF2NeRF (tau 0)"}
    assert record["methods"]["ours (tau 0.5)"] == metrics
    keys = ("psnr_outside_object_after_vs_before", "object_colour_change", "relevance_iou_with_object")
    for method in record["methods"].values():
        assert all(isinstance(method[key], float) for key in keys)
        changes = method["non_target_colour_change"]
        assert set(changes) == {"cone", "sphere"} and all(isinstance(v, float) for v in changes.values())
        assert method["max_non_target_colour_change"] == max(changes.values())
    assert set(record["wall_time_s"]) == {
        "generate scene", "train base (nerfacto-tiny)", "edit (relevance-nerf2nerf-tiny)",
        "edit, Instruct-NeRF2NeRF (tau 0)", "render + measure",
    }  # fmt: skip
    for name in ("before.gif", "after.gif", "after_in2n.gif", "relevance.gif"):
        with Image.open(out / name) as gif:
            assert gif.n_frames == 6 and gif.size == (64 * 3, 64 * 3)
    with Image.open(out / "input_before_after_relevance.gif") as gif:  # input, before, IN2N, ours, relevance
        assert gif.n_frames == 6 and gif.size == (5 * 64 * 3, 64 * 3)
    video = iio.improps(out / "input_before_after_relevance.mp4", plugin="pyav")
    assert video.shape == (6, 64 * 3, 5 * 64 * 3, 3)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (LABEL_WIDTH + 6 * 64 * 3, 5 * 64 * 3)
    for timestamp in ("edit", "edit-in2n"):
        run = out / "runs" / "demo" / "relevance-nerf2nerf-tiny" / timestamp
        assert (run / "config.yml").is_file() and list((run / "nerfstudio_models").glob("step-*.ckpt"))
    for log in ("base.log", "edit.log", "edit_in2n.log"):
        assert (out / "logs" / log).is_file()
    for run in (out / "runs" / "demo").glob("*/*"):  # base and both edits: trained for an exact capture
        config = yaml.load((run / "config.yml").read_text(), Loader=yaml.Loader)
        assert config.pipeline.model.camera_optimizer.mode == "off"
        assert not config.pipeline.model.use_appearance_embedding
        if run.parent.name == "relevance-nerf2nerf-tiny":  # both edits: lr decay over the run, no flags
            assert all(group["scheduler"].max_steps is None for group in config.optimizers.values())
            assert config.pipeline.relevance_iqr_ratio == TOY_EDITOR_IQR_RATIO  # the toy editor's default
    assert record["settings"]["relevance_iqr_ratio"] == TOY_EDITOR_IQR_RATIO


@pytest.mark.slow
def test_shortened_splatfacto_demo_edits_gaussians_with_relevance(tmp_path):
    out = tmp_path / "demo"
    short = {"--num-views": "6", "--base-iterations": "20", "--edit-iterations": "10"}
    args = ["--output-dir", str(out), "--backend", "splatfacto", *(i for pair in short.items() for i in pair)]
    assert main(args) == 0
    [out] = out.iterdir()
    record = json.loads((out / "metrics.json").read_text())
    assert set(record["wall_time_s"]) >= {"train base (splatfacto-tiny)", "edit (relevance-splatfacto-tiny)"}
    assert isinstance(record["metrics"]["relevance_iou_with_object"], float)
    assert (out / "scene" / "points3D.ply").is_file()  # splatfacto seeds its Gaussians from it
    run = out / "runs" / "demo" / "relevance-splatfacto-tiny" / "edit"
    config = yaml.load((run / "config.yml").read_text(), Loader=yaml.Loader)
    assert config.pipeline.model.__class__.__name__ == "RelevanceSplatfactoModelConfig"
    assert list((run / "nerfstudio_models").glob("step-*.ckpt"))


def test_backend_chooses_its_presets_and_refuses_the_other_models_edit_method():
    from relevance_nerf2nerf.cli.demo import DemoCommand, validate

    command = DemoCommand(backend="splatfacto")
    assert (command.base_method, command.edit_method) == ("splatfacto-tiny", "relevance-splatfacto-tiny")
    with pytest.raises(InvalidInputError, match="relevance-splatfacto-tiny"):
        validate(DemoCommand(backend="splatfacto", edit_method="relevance-nerf2nerf-tiny"))


@pytest.mark.parametrize("method", ["nerfacto-tiny", "relevance-nerf2nerf-tiny", "nerfacto"])
def test_exact_capture_flags_parse_in_ns_train(method):
    """What the demo appends to both ns-train stages turns off pose refinement and appearance embeddings."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    config = tyro.cli(AnnotatedBaseConfigUnion, args=[method, *EXACT_CAPTURE_ARGS])  # ns-train's own parser
    default = tyro.cli(AnnotatedBaseConfigUnion, args=[method])
    assert default.pipeline.model.camera_optimizer.mode != "off"
    assert default.pipeline.model.use_appearance_embedding
    assert config.pipeline.model.camera_optimizer.mode == "off"
    assert not config.pipeline.model.use_appearance_embedding
