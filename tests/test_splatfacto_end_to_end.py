"""The Gaussian-splat user's path on a CPU, in subprocesses: ns-train splatfacto-tiny on a generated scene
(with its point cloud) -> ns-train relevance-splatfacto-tiny with the bundled toy editor -> ns-render rgb
and relevance."""

from __future__ import annotations

import shutil
from importlib.metadata import entry_points

import numpy as np
import pytest
from command_line import BIN, render_rgb_and_relevance, run_tool, tool_env
from PIL import Image

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.scenes import generate_scene
from relevance_nerf2nerf.scenes.points import add_point_cloud

pytestmark = pytest.mark.slow

METHODS = {
    "splatfacto-tiny": "splatfacto_tiny",
    "relevance-splatfacto-tiny": "relevance_splatfacto_tiny",
}


def _env() -> dict[str, str]:
    env = tool_env()
    registered = set(entry_points(group="nerfstudio.method_configs").names)
    missing = [f"{name}=method_configs.relevance_splatfacto:{attr}" for name, attr in METHODS.items()]
    if not set(METHODS) <= registered:  # an install without the entry points: name them for nerfstudio
        env["NERFSTUDIO_METHOD_CONFIGS"] = ",".join(missing)
    return env


@pytest.mark.skipif(shutil.which("ns-train", path=str(BIN)) is None, reason="nerfstudio CLI not installed")
def test_train_a_splat_base_edit_it_and_render_rgb_and_relevance(tmp_path):
    from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file, resolve_checkpoint

    env = _env()
    scene = generate_scene(tmp_path / "scene", seed=0, num_views=10, width=32, height=32).output_dir
    add_point_cloud(scene, num_points=800)
    runs = tmp_path / "runs"
    common = ["--data", scene, "--output-dir", runs, "--experiment-name", "e2e", "--vis", "tensorboard"]
    run_tool(
        "ns-train", "splatfacto-tiny", *common, "--timestamp", "base", "--max-num-iterations", "100", env=env
    )
    base = runs / "e2e" / "splatfacto-tiny" / "base"
    base_state = load_checkpoint_file(resolve_checkpoint(base))
    assert base_state["step"] == 99
    assert len(base_state["pipeline"]["_model.gauss_params.means"]) >= 800  # seeded from the point cloud

    run_tool(
        "ns-train", "relevance-splatfacto-tiny", *common, "--timestamp", "edit",
        "--max-num-iterations", "12", "--pipeline.edit-every", "4", "--pipeline.edit-steps", "4",
        "--pipeline.instruction", "make the cube blue", "--pipeline.editor-model", TOY_EDITOR_DIR,
        "--pipeline.base-checkpoint", base, env=env,
    )  # fmt: skip
    run = runs / "e2e" / "relevance-splatfacto-tiny" / "edit"
    state = load_checkpoint_file(resolve_checkpoint(run))["pipeline"]
    assert int(state["datamanager.edits_done"]) == 3  # steps 0, 4, 8
    assert int(state["_model.base_step"]) == 100  # splatfacto's schedules continue after the base's step 99
    assert "_model.gauss_params.relevance" in state
    assert len(list((run / "edited_dataset" / "relevance").glob("*.png"))) >= 1

    for name, frames in render_rgb_and_relevance(run, tmp_path / "renders", env).items():
        assert len(frames) == 9, name  # nerfstudio's split: 9 of the 10 views train
        assert np.asarray(Image.open(frames[0])).shape[:2] == (32, 32), name
