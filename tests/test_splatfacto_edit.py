"""Editing a splatfacto run in-process on the CPU, through the trainer ``ns-train`` builds: the base's step
carried into splatfacto's schedules while the edit counts from 0, optimizers holding the model's own tensors
after every load, ``--load-dir`` of a splatfacto run starting an edit, a killed edit resuming to its plan, and
the update loop (maps, renders, edited views) shared with nerfacto."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from test_hardening_resume import _kill_at, _Killed, _setup
from test_nerf_pipeline import RecolourEditor

from method_configs.relevance_splatfacto import relevance_splatfacto_tiny, splatfacto_tiny
from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file, resolve_checkpoint
from relevance_nerf2nerf.nerf.datamanager import RelevanceFullImageDataManager
from relevance_nerf2nerf.nerf.relevance import RELEVANCE, RELEVANCE_TARGET, RELEVANCE_VALID
from relevance_nerf2nerf.nerf.trainer import RelevanceTrainer
from relevance_nerf2nerf.scenes import generate_scene
from relevance_nerf2nerf.scenes.points import add_point_cloud

BASE_ITERATIONS, PLAN, EDIT_EVERY = 40, 12, 3


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    info = generate_scene(tmp_path_factory.mktemp("scene"), seed=0, num_views=8, width=24, height=24)
    add_point_cloud(info.output_dir, num_points=400)
    return info.output_dir


def _config(base, scene: Path, output: Path, name: str, iterations: int):
    config = copy.deepcopy(base)
    config.vis, config.output_dir, config.experiment_name, config.timestamp = "tensorboard", output, "t", name
    config.max_num_iterations = iterations
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    config.pipeline.datamanager.data = scene
    return config


@pytest.fixture(scope="module")
def base_run(scene, tmp_path_factory) -> Path:
    """A short splatfacto-tiny run (checkpoint at step 39) trained through nerfstudio's Trainer."""
    trainer = _setup(_config(splatfacto_tiny.config, scene, tmp_path_factory.mktemp("base"), "base", 40))
    trainer.train()
    return Path(trainer.base_dir)


def _editor(scene: Path) -> RecolourEditor:
    cube = next(o for o in load_spec(scene).objects if o.name == "cube")
    return RecolourEditor(cube.rgb)


def load_spec(scene: Path):
    from relevance_nerf2nerf.scenes import load_scene

    return load_scene(scene).spec


def _editing(scene: Path, output: Path, name: str, iterations: int, base_run: Path | None = None):
    config = _config(relevance_splatfacto_tiny.config, scene, output, name, iterations)
    pipeline = config.pipeline
    pipeline.instruction, pipeline.edit_every, pipeline.export_dataset = (
        "make the cube blue",
        EDIT_EVERY,
        False,
    )
    pipeline.base_checkpoint = base_run
    config.steps_per_save = 4
    return config


def _assert_optimizers_hold_the_models_tensors(trainer: RelevanceTrainer) -> None:
    model = trainer.pipeline.model
    for name, (param,) in model.get_gaussian_param_groups().items():
        optimizer = trainer.optimizers.optimizers[name]
        assert optimizer.param_groups[0]["params"][0] is param, name
        for value in optimizer.state.get(param, {}).values():
            assert not torch.is_tensor(value) or value.dim() == 0 or value.shape == param.shape, name


def test_an_edit_continues_the_bases_step_and_its_first_iteration_is_one_optimizer_step(
    scene, base_run, tmp_path
):
    trainer = _setup(_editing(scene, tmp_path, "first", 1, base_run))
    model = trainer.pipeline.model
    assert int(model.base_step) == BASE_ITERATIONS  # the base saved step 39: splatfacto continues at 40
    assert torch.all(torch.sigmoid(model.relevance_logits) < 0.1)  # a base without relevance: below tau
    _assert_optimizers_hold_the_models_tensors(trainer)
    before = model.opacities.detach().clone()
    trainer.pipeline.editor = _editor(scene)
    trainer.train()
    assert trainer._start_step == 0 and int(trainer.pipeline.datamanager.edits_done) == 1
    assert model.step == BASE_ITERATIONS  # what splatfacto saw: base step + edit step 0
    after = model.opacities.detach()
    assert after.shape == before.shape  # no densification or pruning on the first iteration
    lr = trainer.optimizers.optimizers["opacities"].param_groups[0]["lr"]
    change = (after - before).abs()
    assert float(change.max()) <= 1.01 * lr and float(change.max()) > 0  # one Adam step, no opacity reset


def test_load_dir_of_a_splatfacto_run_starts_an_edit_at_step_zero(scene, base_run, tmp_path):
    config = _editing(scene, tmp_path, "loaddir", 2)
    config.load_dir = base_run / "nerfstudio_models"
    trainer = _setup(config)
    assert trainer._start_step == 0
    model = trainer.pipeline.model
    base = load_checkpoint_file(resolve_checkpoint(base_run))["pipeline"]
    assert torch.equal(model.means.detach(), base["_model.gauss_params.means"])
    assert int(model.base_step) == BASE_ITERATIONS
    trainer.pipeline.editor = _editor(scene)
    trainer.train()
    _assert_optimizers_hold_the_models_tensors(trainer)
    assert int(trainer.pipeline.datamanager.edits_done) == 1


def test_a_killed_edit_resumes_to_its_plan_with_the_optimizers_on_the_loaded_gaussians(
    scene, base_run, tmp_path
):
    first = _setup(_editing(scene, tmp_path, "killed", PLAN, base_run))
    first.pipeline.editor = _editor(scene)
    _kill_at(first, 6)
    with pytest.raises(_Killed):
        first.train()
    config = _editing(scene, tmp_path, "resumed", PLAN, base_run)
    config.load_dir = first.checkpoint_dir
    resumed = _setup(config)
    assert resumed._start_step == 5  # after the checkpoint at step 4
    assert int(resumed.pipeline.model.base_step) == BASE_ITERATIONS  # kept in the checkpoint
    _assert_optimizers_hold_the_models_tensors(resumed)
    means = resumed.optimizers.optimizers["means"]
    assert means.state[resumed.pipeline.model.means]["exp_avg"].abs().sum() > 0  # Adam's moments restored
    resumed.pipeline.editor = _editor(scene)
    resumed.train()
    final = load_checkpoint_file(resolve_checkpoint(resumed.base_dir))
    assert final["step"] == PLAN - 1
    assert int(final["pipeline"]["datamanager.edits_done"]) == len(range(0, PLAN, EDIT_EVERY))


def test_full_images_carry_the_views_edit_state(scene, tmp_path):
    pipeline = _editing(scene, tmp_path, "unused", 1).pipeline.setup(device="cpu", test_mode="val")
    datamanager = pipeline.datamanager
    assert isinstance(datamanager, RelevanceFullImageDataManager)
    datamanager.set_relevance(2, torch.full((1, 1, 24, 24), 0.6))
    datamanager.set_edited_image(2, torch.zeros(1, 3, 24, 24))
    for _ in range(datamanager.num_views):
        camera, batch = datamanager.next_train(0)
        index = camera.metadata["cam_idx"]
        assert bool(batch[RELEVANCE_VALID].all()) == (index == 2)
        if index == 2:
            assert torch.all(batch["image"] == 0)
            assert torch.all(batch[RELEVANCE_TARGET] == torch.tensor(153 / 255))
    rgb, relevance = pipeline.render_view(2)  # the model's own render for the editor
    assert rgb.shape == (1, 3, 24, 24) and relevance.shape == (1, 1, 24, 24)
    pipeline.model.eval()
    assert RELEVANCE in pipeline.model.get_outputs_for_camera(datamanager.train_dataset.cameras[0:1])
