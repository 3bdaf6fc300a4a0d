"""splatfacto with a per-Gaussian relevance: gradient isolation, densification carrying relevance, and
loading a base (fresh relevance well below tau, optimizers bound to the model's tensors)."""

from __future__ import annotations

import pytest
import torch
from gsplat.strategy.ops import remove
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers

from relevance_nerf2nerf.nerf.relevance import (
    RELEVANCE,
    RELEVANCE_PARAM_GROUP,
    RELEVANCE_TARGET,
    RELEVANCE_VALID,
)
from relevance_nerf2nerf.nerf.splat_rasterizer import rasterize_reference
from relevance_nerf2nerf.nerf.splatfacto_model import RelevanceSplatfactoModel, RelevanceSplatfactoModelConfig

GEOMETRY = ("means", "scales", "quats", "opacities", "features_dc", "features_rest")
SIZE = 32


def _model(num_points: int = 200, **overrides) -> RelevanceSplatfactoModel:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(num_points, 3, generator=generator) * 0.4
    colours = torch.randint(0, 256, (num_points, 3), generator=generator).float()
    settings = dict(use_lpips=False, num_downscales=0, use_absgrad=False, sh_degree=1)
    config = RelevanceSplatfactoModelConfig(**{**settings, **overrides})
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return config.setup(scene_box=box, num_train_data=4, seed_points=(points, colours))


def _optimizers(model: RelevanceSplatfactoModel) -> Optimizers:
    config = {
        name: {"optimizer": AdamOptimizerConfig(lr=1e-3), "scheduler": None}
        for name in model.get_param_groups()
    }
    return Optimizers(config, model.get_param_groups())


def _camera() -> Cameras:
    c2w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0]])[None]
    return Cameras(camera_to_worlds=c2w, fx=30.0, fy=30.0, cx=SIZE / 2, cy=SIZE / 2, width=SIZE, height=SIZE)


def _relevance_batch(value: float = 1.0) -> dict:
    return {
        "image": torch.rand(SIZE, SIZE, 3),
        RELEVANCE_TARGET: torch.full((SIZE, SIZE, 1), value),
        RELEVANCE_VALID: torch.ones(SIZE, SIZE, 1, dtype=torch.bool),
    }


def test_relevance_is_a_gaussian_parameter_with_its_own_optimizer_starting_below_tau():
    model = _model()
    groups = model.get_param_groups()
    assert groups[RELEVANCE_PARAM_GROUP] == [model.gauss_params[RELEVANCE_PARAM_GROUP]]
    assert set(model.gauss_params) <= set(groups)  # gsplat's strategy needs an optimizer per key
    assert model.gauss_params[RELEVANCE_PARAM_GROUP].shape == (200, 1)
    assert torch.all(torch.sigmoid(model.relevance_logits) < 0.05)
    model.eval()
    outputs = model.get_outputs_for_camera(_camera())
    assert outputs[RELEVANCE].shape == (SIZE, SIZE, 1)
    assert float(outputs[RELEVANCE].max()) < 0.05


def _gsplat_on_the_reference(monkeypatch) -> None:
    """gsplat's ``rasterization`` (CUDA) stood in for by the reference rasterizer with gsplat's signature, so
    the model's CUDA branch (a second, detached rasterization for relevance) runs on a CPU."""
    import gsplat.rendering

    def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, packed,
                      render_mode="RGB", sh_degree=None, sparse_grad=False, **common):  # fmt: skip
        assert packed is False and sparse_grad is False
        common.pop("absgrad", None)
        return rasterize_reference(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, render_mode=render_mode,
            sh_degree=sh_degree, **common,
        )  # fmt: skip

    monkeypatch.setattr(gsplat.rendering, "rasterization", rasterization)


@pytest.mark.parametrize("renderer", ["reference", "gsplat"])
def test_relevance_loss_reaches_no_geometry_opacity_or_colour(renderer, monkeypatch):
    if renderer == "gsplat":
        _gsplat_on_the_reference(monkeypatch)
    model = _model(renderer=renderer)
    optimizers = _optimizers(model)
    model.train()
    model.step_cb(optimizers, 0)
    outputs = model.get_outputs(_camera())
    loss = model.get_loss_dict(outputs, _relevance_batch())["relevance_loss"]
    loss.backward()
    assert float(model.relevance_logits.grad.abs().sum()) > 0
    for name in GEOMETRY:
        grad = model.gauss_params[name].grad
        assert grad is None or float(grad.abs().sum()) == 0.0, name


def test_colour_loss_still_trains_the_geometry():
    model = _model()
    optimizers = _optimizers(model)
    model.train()
    model.step_cb(optimizers, 0)
    outputs = model.get_outputs(_camera())
    model.get_loss_dict(outputs, {"image": torch.rand(SIZE, SIZE, 3)})["main_loss"].backward()
    assert model.relevance_logits.grad is None
    for name in ("means", "scales", "opacities", "features_dc"):
        assert float(model.gauss_params[name].grad.abs().sum()) > 0, name


def test_split_duplicate_and_prune_carry_each_gaussians_relevance():
    model = _model(num_points=6)
    optimizers = _optimizers(model)
    model.step_cb(optimizers, 0)
    with torch.no_grad():
        model.relevance_logits.copy_(torch.arange(6, dtype=torch.float32)[:, None])
        model.gauss_params["scales"][0] = torch.log(torch.tensor(0.5))  # large: split
        model.gauss_params["scales"][1] = torch.log(torch.tensor(0.001))  # small: duplicated
    state = model.strategy_state
    state["grad2d"] = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # high gradients on Gaussians 0 and 1
    state["count"] = torch.ones(6)
    state["radii"] = torch.zeros(6)  # no screen-size splits
    n_dupli, n_split = model.strategy._grow_gs(model.gauss_params, optimizers.optimizers, state, step=600)
    assert (n_dupli, n_split) == (1, 1)
    # gsplat keeps the rest in order, appends the duplicate, then replaces a split Gaussian by two children.
    relevance = model.relevance_logits.detach().flatten().tolist()
    assert relevance == [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 0.0, 0.0]
    assert all(len(p) == 8 for p in model.gauss_params.values())
    remove(model.gauss_params, optimizers.optimizers, state, torch.tensor([1, 0, 0, 0, 0, 0, 0, 0]).bool())
    assert model.relevance_logits.detach().flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 1.0, 0.0, 0.0]
    for name, (param,) in model.get_gaussian_param_groups().items():
        assert optimizers.optimizers[name].param_groups[0]["params"][0] is param, name


def test_a_base_without_relevance_loads_below_tau_and_the_optimizers_follow_the_new_tensors():
    base = _model(num_points=50)
    state = {k: v for k, v in base.state_dict().items() if not k.endswith(RELEVANCE_PARAM_GROUP)}
    model = _model(num_points=200)
    optimizers = _optimizers(model)
    model.load_state_dict(state, strict=False)
    assert model.num_points == 50
    assert torch.equal(model.means, base.means)
    assert torch.all(torch.sigmoid(model.relevance_logits) < 0.05)
    model.step_cb(optimizers, 0)
    for name, (param,) in model.get_gaussian_param_groups().items():
        assert optimizers.optimizers[name].param_groups[0]["params"][0] is param, name
        assert optimizers.parameters[name][0] is param, name


def test_frozen_gaussians_get_no_gradient_and_no_densification_statistics():
    model = _model(num_points=200, freeze_below=0.5)
    optimizers = _optimizers(model)
    with torch.no_grad():
        model.relevance_logits[:100] = 3.0  # relevant: trained; the other 100 stay below 0.5: frozen
    model.train()
    model.step_cb(optimizers, 0)
    outputs = model.get_outputs(_camera())
    model.get_loss_dict(outputs, _relevance_batch())["main_loss"].backward()
    for name in GEOMETRY[:5]:
        grad = model.gauss_params[name].grad
        assert float(grad[100:].abs().sum()) == 0.0, name
        if name != "features_rest":  # SH degree 0 band only at step 0: the rest has no gradient at all
            assert float(grad[:100].abs().sum()) > 0, name
    model.step_post_backward(0)
    grad2d = model.strategy_state["grad2d"]
    assert float(grad2d[100:].sum()) == 0.0 and float(grad2d[:100].sum()) > 0


def test_the_sh_degree_comes_from_the_loaded_checkpoint():
    base = _model(num_points=30)  # SH degree 1: three higher coefficients per colour
    model = _model(num_points=30, sh_degree=3)
    model.load_state_dict(base.state_dict())
    assert model.config.sh_degree == 1 and model.features_rest.shape == (30, 3, 3)
    model.eval()
    assert model.get_outputs_for_camera(_camera())["rgb"].shape == (SIZE, SIZE, 3)
