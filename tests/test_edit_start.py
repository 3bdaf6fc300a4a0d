"""An edit starts from a trained base: its first iterations must not undo what the base learned."""

import copy

import pytest
import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

from method_configs.relevance_nerf2nerf import (
    nerfacto_tiny,
    relevance_nerf2nerf,
    relevance_nerf2nerf_small,
    relevance_nerf2nerf_tiny,
)

BEFORE_AND_AFTER = (
    TrainingCallbackLocation.BEFORE_TRAIN_ITERATION,
    TrainingCallbackLocation.AFTER_TRAIN_ITERATION,
)


def _run_callbacks(model, step: int) -> None:
    attributes = TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=None, trainer=None)
    for callback in model.get_training_callbacks(attributes):
        for where in BEFORE_AND_AFTER:
            callback.run_callback_at_location(step, where)


def _tiny_model(config):
    model_config = copy.deepcopy(config.pipeline.model)  # the presets stay as they are
    model_config.implementation = "torch"
    model_config.use_lpips = False
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return model_config.setup(scene_box=scene_box, num_train_data=4, metadata={})


@pytest.mark.parametrize("method", [relevance_nerf2nerf_tiny, relevance_nerf2nerf, relevance_nerf2nerf_small])
def test_edit_presets_keep_the_bases_proposal_sampling_sharp_from_step_0(method):
    model = _tiny_model(method.config)
    _run_callbacks(model, step=0)
    assert model.proposal_sampler._anneal == 1.0  # nerfacto's annealing would start at 0: flat proposals
    _run_callbacks(model, step=1)
    assert model.proposal_sampler._step == 1  # the proposal update schedule still counts steps


def test_base_preset_still_anneals_its_proposal_weights():
    model = _tiny_model(nerfacto_tiny.config)
    _run_callbacks(model, step=0)
    assert model.proposal_sampler._anneal == 0.0
