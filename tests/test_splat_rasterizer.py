"""The CPU reference rasterizer of Gaussian splats: cases with a known answer, gsplat's strategy inputs, and
agreement with gsplat's CUDA rasterization where a GPU is present."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from PIL import Image
from torch.nn import Parameter

from relevance_nerf2nerf.nerf.splat_rasterizer import ALPHA_MIN, rasterize_reference
from relevance_nerf2nerf.nerf.splatfacto_model import RelevanceSplatfactoModelConfig
from relevance_nerf2nerf.scenes import ring_cameras, write_scene
from relevance_nerf2nerf.scenes.spec import SceneObject, SceneSpec

SIZE, FOCAL = 32, 32.0
IDENTITY_VIEW = torch.eye(4)[None]  # camera at the origin looking down +z (OpenCV axes, as gsplat takes them)
K = torch.tensor([[FOCAL, 0.0, SIZE / 2], [0.0, FOCAL, SIZE / 2], [0.0, 0.0, 1.0]])[None]
NO_ROTATION = torch.tensor([[1.0, 0.0, 0.0, 0.0]])


def _pixel_centres() -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    return xs, ys


def test_one_isotropic_gaussian_has_the_analytic_footprint_and_alpha():
    depth, scale, opacity = 5.0, 0.3, 0.8
    render, alpha, info = rasterize_reference(
        torch.tensor([[0.0, 0.0, depth]]), NO_ROTATION, torch.full((1, 3), scale), torch.tensor([opacity]),
        torch.tensor([[1.0, 0.5, 0.25]]), IDENTITY_VIEW, K, SIZE, SIZE,
    )  # fmt: skip
    # EWA: screen variance (f s / z)^2 plus gsplat's 0.3 px^2 blur; alpha = o exp(-d^2 / 2 var);
    # below 1/255 the Gaussian is skipped.
    variance = (FOCAL * scale / depth) ** 2 + 0.3
    xs, ys = _pixel_centres()
    expected = opacity * torch.exp(-0.5 * ((xs - SIZE / 2) ** 2 + (ys - SIZE / 2) ** 2) / variance)
    expected = torch.where(expected >= ALPHA_MIN, expected, torch.zeros_like(expected))
    assert torch.allclose(alpha[0, ..., 0], expected, atol=1e-6)
    assert torch.allclose(render[0], alpha[0] * torch.tensor([1.0, 0.5, 0.25]), atol=1e-6)
    # 3 sigma of gsplat's eigenvalue bound, b + sqrt(max(b^2 - det, 0.01)): variance + 0.1 when isotropic.
    assert int(info["radii"][0, 0]) == math.ceil(3 * math.sqrt(variance + 0.1))
    assert torch.allclose(info["means2d"][0, 0], torch.tensor([SIZE / 2, SIZE / 2]))
    assert (info["width"], info["height"], info["n_cameras"]) == (SIZE, SIZE, 1)


def test_overlapping_gaussians_composite_front_to_back_whatever_their_order():
    means = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 6.0]])  # red in front of blue, on the same axis
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    scales, opacities = torch.full((2, 3), 0.5), torch.tensor([0.9, 0.9])
    quats = NO_ROTATION.repeat(2, 1)
    front_first, _, _ = rasterize_reference(
        means, quats, scales, opacities, colours, IDENTITY_VIEW, K, SIZE, SIZE
    )
    flipped = [0, 1][::-1]
    back_first, alpha, _ = rasterize_reference(
        means[flipped], quats, scales, opacities, colours[flipped], IDENTITY_VIEW, K, SIZE, SIZE
    )
    centre = SIZE // 2
    red, blue = 0.9, 0.1 * 0.9  # centre pixel: alpha ~ 0.9 each (pixel centre 0.5 px off the mean)
    assert torch.allclose(front_first, back_first, atol=1e-6)
    pixel = front_first[0, centre, centre]
    assert pixel[0] == pytest.approx(red, abs=0.02) and pixel[2] == pytest.approx(blue, abs=0.02)
    assert pixel[0] > 5 * pixel[2]
    assert float(alpha[0, centre, centre, 0]) == pytest.approx(red + blue, abs=0.02)


def test_means2d_receives_the_gradient_the_densification_strategy_reads():
    # The last Gaussian is behind the camera.
    means = torch.tensor([[0.0, 0.0, 5.0], [0.5, 0.0, 5.0], [0.0, 0.0, -5.0]], requires_grad=True)
    render, _, info = rasterize_reference(
        means, NO_ROTATION.repeat(3, 1), torch.full((3, 3), 0.2), torch.tensor([0.5, 0.5, 0.5]),
        torch.rand(3, 3), IDENTITY_VIEW, K, SIZE, SIZE,
    )  # fmt: skip
    info["means2d"].retain_grad()
    render[..., : SIZE // 2 + 2, :].sum().backward()  # an asymmetric loss: the centres should move
    grad = info["means2d"].grad
    assert grad.shape == (1, 3, 2)
    assert grad[0, :2].abs().sum() > 0
    assert info["radii"][0, 2] == 0 and torch.all(grad[0, 2] == 0)  # culled: no gradient, no radius


def test_detached_features_train_only_themselves():
    means = torch.tensor([[0.0, 0.0, 5.0]], requires_grad=True)
    opacities = torch.tensor([0.7], requires_grad=True)
    relevance = torch.tensor([[0.3]], requires_grad=True)
    _, alpha, info = rasterize_reference(
        means, NO_ROTATION, torch.full((1, 3), 0.3), opacities, torch.ones(1, 3), IDENTITY_VIEW, K,
        SIZE, SIZE, detached_colors=relevance,
    )  # fmt: skip
    assert torch.allclose(info["detached_render"], 0.3 * alpha.detach())
    info["detached_render"].sum().backward()
    assert relevance.grad is not None and float(relevance.grad) > 0
    assert means.grad is None and opacities.grad is None


def _one_object_scene(tmp_path, shape: str) -> SceneSpec:
    obj = SceneObject(shape, shape, "red", 0.3, -0.2, 0.35, angle=0.4)
    spec = SceneSpec(objects=(obj,), seed=0)
    write_scene(tmp_path, spec, ring_cameras(8, 64, 64))
    return spec


@pytest.mark.parametrize("shape", ["sphere", "cube"])
def test_a_gaussian_at_an_objects_centre_lands_on_its_mask_centroid_in_every_view(tmp_path, shape):
    """Through nerfstudio's dataparser (re-centred, rescaled world) and the model's camera conventions."""
    spec = _one_object_scene(tmp_path, shape)
    obj = spec.objects[0]
    outputs = (
        NerfstudioDataParserConfig(data=tmp_path, train_split_fraction=1.0).setup().get_dataparser_outputs()
    )
    centre = torch.tensor([obj.x, obj.y, obj.size, 1.0])  # sphere and cube: centre at height = size
    centre = outputs.dataparser_scale * (outputs.dataparser_transform @ centre)
    config = RelevanceSplatfactoModelConfig(use_lpips=False, sh_degree=0, background_color="black")
    model = config.setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames),
        seed_points=(torch.randn(8, 3), torch.zeros(0, 3)),
    )  # fmt: skip
    params = {
        "means": centre[None], "scales": torch.full((1, 3), math.log(0.01)), "quats": NO_ROTATION,
        "features_dc": torch.full((1, 3), 10.0), "features_rest": torch.zeros(1, 0, 3),
        "opacities": torch.full((1, 1), 10.0), "relevance": torch.zeros(1, 1),
    }  # fmt: skip
    for name, value in params.items():
        model.gauss_params[name] = Parameter(value)
    model.eval()
    cameras: Cameras = outputs.cameras
    for i, image in enumerate(outputs.image_filenames):
        mask = np.asarray(Image.open(tmp_path / "masks" / shape / image.name)) > 0
        ys, xs = np.nonzero(mask)
        assert len(xs) > 50, "the object should be in view"
        alpha = model.get_outputs_for_camera(cameras[i : i + 1])["accumulation"][..., 0].numpy()
        rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
        spot = (float((alpha * cols).sum() / alpha.sum()), float((alpha * rows).sum() / alpha.sum()))
        assert spot == pytest.approx((xs.mean(), ys.mean()), abs=1.0), f"view {i}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasterization needs CUDA")
def test_matches_gsplat_on_cuda():
    from gsplat.rendering import rasterization

    generator = torch.Generator().manual_seed(0)
    n = 300
    means = torch.randn(n, 3, generator=generator) * 0.6 + torch.tensor([0.0, 0.0, 4.0])
    quats = torch.randn(n, 4, generator=generator)
    scales = torch.rand(n, 3, generator=generator) * 0.1 + 0.02
    opacities = torch.rand(n, generator=generator)
    coeffs = torch.randn(n, 4, 3, generator=generator) * 0.5
    args = (means, quats, scales, opacities, coeffs, IDENTITY_VIEW, K)
    ours, ours_alpha, ours_info = rasterize_reference(*args, SIZE, SIZE, sh_degree=1)
    theirs, theirs_alpha, theirs_info = rasterization(*(a.cuda() for a in args), SIZE, SIZE, sh_degree=1)
    assert torch.equal(ours_info["radii"], theirs_info["radii"].cpu())
    assert torch.allclose(ours_alpha, theirs_alpha.cpu(), atol=2e-3)
    assert torch.allclose(ours, theirs.cpu(), atol=2e-3)
