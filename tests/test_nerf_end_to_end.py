"""The user's path, in subprocesses: ns-train nerfacto-tiny -> ns-train relevance-nerf2nerf-tiny with a
tiny (random-weight, real diffusers) InstructPix2Pix -> ns-render of rgb and relevance from its config."""

from __future__ import annotations

import json
import shutil

import pytest
from command_line import BIN, render_rgb_and_relevance, run_tool

from relevance_nerf2nerf.scenes import generate_scene

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("ns-train", path=str(BIN)) is None, reason="nerfstudio CLI not installed")
def test_train_edit_and_render_from_the_command_line(tmp_path, tiny_ip2p_dir):
    from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file

    scene = generate_scene(tmp_path / "scene", seed=0, num_views=10, width=32, height=32).output_dir
    runs = tmp_path / "runs"
    common = ["--data", scene, "--output-dir", runs, "--experiment-name", "e2e", "--vis", "tensorboard"]
    common += ["--pipeline.datamanager.train-num-rays-per-batch", "256"]
    run_tool("ns-train", "nerfacto-tiny", *common, "--timestamp", "base", "--max-num-iterations", "40")
    base = runs / "e2e" / "nerfacto-tiny" / "base"
    assert list((base / "nerfstudio_models").glob("step-*.ckpt"))

    run_tool(
        "ns-train", "relevance-nerf2nerf-tiny", *common, "--timestamp", "edit",
        "--max-num-iterations", "16", "--pipeline.edit-every", "4", "--pipeline.edit-steps", "4",
        "--pipeline.instruction", "make the cube blue", "--pipeline.editor-model", tiny_ip2p_dir,
        "--pipeline.base-checkpoint", base,
    )  # fmt: skip
    run = runs / "e2e" / "relevance-nerf2nerf-tiny" / "edit"
    checkpoint = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    state = load_checkpoint_file(checkpoint)["pipeline"]  # weights-only, numpy scalars allow-listed
    assert int(state["datamanager.edits_done"]) == 4  # steps 0, 4, 8, 12: 4 distinct views
    assert int((state["datamanager.edit_counts"] > 0).sum()) == 4
    transforms = json.loads((run / "edited_dataset" / "transforms.json").read_text())
    assert sum(frame.get("edits", 0) for frame in transforms["frames"]) == 4  # eval views have none
    assert len(list((run / "edited_dataset" / "relevance").glob("*.png"))) == 4

    frames = render_rgb_and_relevance(run, tmp_path / "renders")
    assert {name: len(files) for name, files in frames.items()} == {"rgb": 9, "relevance": 9}
