"""The viewer: nerfstudio's own traversal finds the pipeline's controls (without loading the editor), the
controls set the next edit, ``relevance`` is an output the viewer offers, and ns-viewer loads a checkpoint
of this method on torch >= 2.6 (subprocess, offline, no IP2P)."""

from __future__ import annotations

import copy
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.model_components.renderers import background_color_override_context
from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement, ViewerSlider, ViewerText
from nerfstudio.viewer_legacy.server.viewer_elements import ViewerElement as LegacyViewerElement

from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny
from relevance_nerf2nerf.diffusion.editor import EditResult, RelevanceResult
from relevance_nerf2nerf.errors import ModelNotFoundError
from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipeline
from relevance_nerf2nerf.scenes import generate_scene

SIZE = 24
CONTROLS = {  # viewer label -> (pipeline attribute, element type)
    "Instruction": ("viewer_instruction", ViewerText),
    "Mask threshold (tau)": ("viewer_tau", ViewerSlider),
    "Text guidance (s_T)": ("viewer_text_guidance", ViewerSlider),
    "Image guidance (s_I)": ("viewer_image_guidance", ViewerSlider),
}


class InvertEditor:
    """Exact double: relevance 0.75 everywhere; the edit inverts the render where relevance >= tau and pastes
    ``composite_source`` elsewhere. Records the instruction and settings of every call."""

    def __init__(self):
        self.calls: list[dict] = []

    def relevance(self, image, instruction, **kwargs):
        self.calls.append({"method": "relevance", "instruction": instruction})
        pixel = torch.full_like(image[:, :1], 0.75)
        return RelevanceResult(latent=pixel, pixel=pixel)

    def edit(self, image, instruction, *, relevance, mask_threshold, composite_source, **kwargs):
        self.calls.append({"method": "edit", "instruction": instruction, "tau": mask_threshold, **kwargs})
        mask = relevance >= mask_threshold
        return EditResult(
            image=torch.where(mask, 1 - image, composite_source), relevance=relevance, mask=mask
        )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), seed=1, num_views=10, width=SIZE, height=SIZE
    ).output_dir


def _config(scene: Path):
    config = copy.deepcopy(relevance_nerf2nerf_tiny.config)
    config.pipeline.datamanager.data = scene
    config.pipeline.instruction = "make the cube blue"
    return config


@pytest.fixture
def pipeline(scene) -> RelevanceNerf2NerfPipeline:
    config = _config(scene).pipeline
    config.editor_model = str(scene / "no-such-ip2p")  # loading it would raise ModelNotFoundError
    random.seed(0)  # nerfstudio draws the cached batch's image order with `random`
    torch.manual_seed(0)
    return config.setup(device="cpu", test_mode="val")


def _custom_elements(pipeline) -> dict[str, tuple[str, object]]:
    """What nerfstudio's ViewerState.__init__ collects from the pipeline (viewer/viewer.py, 1.1.5)."""
    assert parse_object(pipeline, LegacyViewerElement, "Custom Elements") == []
    assert parse_object(pipeline, ViewerControl, "Custom Elements") == []
    return {
        element.name: (path, element)
        for path, element in parse_object(pipeline, ViewerElement, "Custom Elements")
    }


def test_viewer_traversal_finds_the_controls_without_loading_the_editor(pipeline):
    elements = _custom_elements(pipeline)
    assert "editor" not in vars(pipeline)  # the walk calls every attribute, but skips the lazy editor
    assert set(elements) == set(CONTROLS)
    for label, (attribute, kind) in CONTROLS.items():
        path, element = elements[label]
        assert path == f"Custom Elements/{attribute}" and isinstance(element, kind)
    config = pipeline.config
    defaults = [config.instruction, config.mask_threshold, config.text_guidance, config.image_guidance]
    assert [elements[label][1].value for label in CONTROLS] == defaults
    with pytest.raises(ModelNotFoundError):  # still loaded on first use, with the core's clear error
        pipeline.editor  # noqa: B018


def test_changed_controls_apply_to_the_next_edit(pipeline):
    elements = {label: element for label, (_, element) in _custom_elements(pipeline).items()}
    elements["Instruction"].value = "make the cube green"
    elements["Mask threshold (tau)"].value = 0.3
    elements["Text guidance (s_T)"].value = 9.0
    elements["Image guidance (s_I)"].value = 1.2
    pipeline.editor = editor = InvertEditor()
    datamanager = pipeline.datamanager
    rgb, _ = pipeline.render_view(2)
    pipeline.edit_view(2)
    relevance_call, edit_call = editor.calls
    assert relevance_call == {"method": "relevance", "instruction": "make the cube green"}
    assert edit_call["instruction"] == "make the cube green" and edit_call["tau"] == 0.3
    assert edit_call["text_guidance"] == 9.0 and edit_call["image_guidance"] == 1.2
    assert (
        datamanager.current_image(2) - (1 - rgb)
    ).abs().max() <= 0.5 / 255 + 1e-6  # 0.75 >= 0.3: all edited

    elements["Mask threshold (tau)"].value = 0.9
    edits = len(editor.calls)
    pipeline.edit_view(4)
    assert [call["method"] for call in editor.calls[edits:]] == ["relevance"]  # 0.75 < 0.9: an empty mask,
    assert torch.equal(datamanager.current_image(4), datamanager.original_image(4))  # no edit at all
    assert datamanager.edit_counts[2] == 1 and datamanager.edit_counts[4] == 0
    assert int(datamanager.edits_done) == 2  # the schedule moved on


def test_relevance_is_an_output_the_viewer_offers(pipeline):
    """The viewer renders with ``get_outputs_for_camera`` in eval mode (with a background override when
    cropping) and offers ``list(outputs.keys())``; 1-channel floats are colour-mapped."""
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    pipeline.model.eval()
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(camera, obb_box=None)
        with background_color_override_context(torch.zeros(3)):
            cropped = pipeline.model.get_outputs_for_camera(camera, obb_box=None)
    for rendered in (outputs, cropped):
        assert "relevance" in list(rendered.keys()) and "rgb" in rendered
        relevance = rendered["relevance"]
        assert relevance.shape == (SIZE, SIZE, 1) and relevance.dtype == torch.float32
        assert 0 <= relevance.min() and relevance.max() <= 1
        image = apply_colormap(relevance, ColormapOptions())
        assert image.shape == (SIZE, SIZE, 3) and 0 <= image.min() and image.max() <= 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ns_viewer_loads_a_checkpoint_of_this_method(scene, tmp_path):
    config = _config(scene)  # editor: the hub id, which offline cannot load; the viewer must not try
    config.output_dir, config.timestamp, config.vis, config.max_num_iterations = (
        tmp_path,
        "run",
        "tensorboard",
        1,
    )
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.pipeline.editor = InvertEditor()
    trainer.train()  # one iteration, one edit, one checkpoint
    TrainerConfig.save_config(config)  # nerfstudio's writer: ns-train's set-up check would refuse the hub id
    run = Path(trainer.base_dir)
    assert len(list((run / "nerfstudio_models").glob("step-*.ckpt"))) == 1

    log = tmp_path / "viewer.log"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    command = [Path(sys.executable).parent / "ns-viewer", "--load-config", run / "config.yml",
               "--viewer.websocket-port", str(_free_port())]  # fmt: skip
    with log.open("w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        # ViewerState is built (server up, pipeline walked for controls) before the local writer is set up
        while "disabled local writer" not in log.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, f"ns-viewer not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        assert process.poll() is None, f"ns-viewer exited:\n{log.read_text()[-3000:]}"
    finally:
        process.terminate()
        process.wait(timeout=30)
    output = log.read_text()
    assert "Done loading checkpoint" in output and "ws://" in output
    assert "Loading editor" not in output and "error:" not in output and "Traceback" not in output
