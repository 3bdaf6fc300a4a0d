"""Pure functions of the diffusion core: relevance post-processing (eq. 3), DDIM schedule and step (eq. 4),
image I/O. No model is loaded here."""

import numpy as np
import pytest
import torch
from PIL import Image

from relevance_nerf2nerf.diffusion.backend import NoisePredictions
from relevance_nerf2nerf.diffusion.images import colorize, crop, load_image, pad_to_multiple, save_image
from relevance_nerf2nerf.diffusion.relevance import iqr_clamp, normalize, postprocess, relevance_from_noise
from relevance_nerf2nerf.diffusion.sampler import (
    add_noise,
    ddim_step,
    ddim_timesteps,
    guided_noise,
    level_to_timestep,
)
from relevance_nerf2nerf.errors import InvalidInputError


def test_relevance_from_noise_is_channel_mean_of_absolute_difference():
    eps_img = torch.zeros(1, 4, 2, 2)
    eps_text = torch.zeros(1, 4, 2, 2)
    eps_text[0, :, 0, 0] = torch.tensor([1.0, -1.0, 2.0, -2.0])
    raw = relevance_from_noise(NoisePredictions(eps_text, eps_img))
    assert raw.shape == (1, 1, 2, 2)
    assert raw[0, 0, 0, 0].item() == 1.5
    assert raw.flatten()[1:].tolist() == [0.0, 0.0, 0.0]


def test_iqr_clamp_clamps_both_tails_with_the_ratio():
    values = torch.arange(9, dtype=torch.float32)  # 0..8: Q1 = 2, Q3 = 6, IQR = 4
    values[0], values[-1] = -100.0, 100.0
    out = iqr_clamp(values.view(1, 1, 3, 3), ratio=0.5).flatten()
    assert out[0].item() == 0.0 and out[-1].item() == 8.0  # [2 - 2, 6 + 2]
    assert torch.equal(out[1:-1], values[1:-1])
    wide = iqr_clamp(values.view(1, 1, 3, 3), ratio=30.0).flatten()
    assert torch.equal(wide, values)  # fences at -118 and 126: nothing clamped


def test_iqr_clamp_is_per_image_and_keeps_zero_iqr_maps():
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 0, 0] = 5.0  # more than half equal: IQR = 0, left as is
    maps[1] = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    maps[1, 0, 3, 3] = 1000.0
    out = iqr_clamp(maps, ratio=1.5)
    assert torch.equal(out[0], maps[0])
    q1, q3 = 3.75, 11.25
    assert out[1, 0, 3, 3].item() == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_normalize_maps_to_unit_range_and_constant_to_zero():
    maps = torch.stack([torch.full((1, 2, 2), 3.0), torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])])
    out = normalize(maps)
    assert torch.equal(out[0], torch.zeros(1, 2, 2))
    assert out[1].flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    assert torch.isfinite(postprocess(torch.zeros(1, 1, 3, 3))).all()


def test_level_to_timestep_and_schedules():
    assert level_to_timestep(0.8, 1000) == 799
    assert ddim_timesteps(100, 1.0, 1000, 1) == list(range(991, 0, -10))  # diffusers' DDIM "leading" grid
    partial = ddim_timesteps(20, 0.5, 1000, 1)
    assert partial[0] == 500 and partial[-1] == 1 and len(partial) == 20
    assert all(a > b for a, b in zip(partial, partial[1:], strict=False))
    assert ddim_timesteps(10, 0.002, 1000, 1) == [2, 1]  # a short span holds fewer steps
    with pytest.raises(ValueError):
        ddim_timesteps(0, 1.0, 1000, 1)


def test_ddim_step_recovers_the_noised_latent_for_the_true_noise():
    gen = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(1, 4, 3, 3, generator=gen), torch.randn(1, 4, 3, 3, generator=gen)
    a_t, a_prev = torch.tensor(0.3), torch.tensor(0.7)
    stepped = ddim_step(add_noise(z0, eps, a_t), eps, a_t, a_prev)
    torch.testing.assert_close(stepped, add_noise(z0, eps, a_prev), rtol=0, atol=1e-6)


def test_guidance_is_equation_1():
    text, img, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([1.0])
    out = guided_noise(NoisePredictions(text, img, uncond), text_guidance=7.5, image_guidance=1.5)
    assert out.item() == 1.0 + 1.5 * (2.0 - 1.0) + 7.5 * (3.0 - 2.0)
    with pytest.raises(ValueError):
        guided_noise(NoisePredictions(text, img), 7.5, 1.5)


@pytest.mark.parametrize("size", [(16, 16), (30, 27), (5, 3)])
def test_pad_to_multiple_and_crop_restore(size):
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    padded, original = pad_to_multiple(image, 8)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert original == size
    assert torch.equal(crop(padded, original), image)


def test_load_image_rgba_on_white_grayscale_and_errors(tmp_path):
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[0, 0, 3] = 255  # ... opaque only at (0, 0); elsewhere fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    assert image.shape == (1, 3, 4, 6) and image.dtype == torch.float32
    assert image[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(image[0, :, 1:, :], torch.ones(3, 3, 6))  # transparent -> white

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.shape == (1, 3, 3, 4)
    assert torch.equal(loaded[0, 0], loaded[0, 2]) and loaded[0, 1, 2, 3].item() == pytest.approx(220 / 255)

    with pytest.raises(InvalidInputError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_image(tmp_path / "broken.png")


def test_save_load_round_trip_and_colorize(tmp_path):
    image = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(2))
    save_image(image, tmp_path / "x.png")
    assert torch.equal(load_image(tmp_path / "x.png"), image.mul(255).round().div(255))
    heat = colorize(torch.tensor([[0.0, 0.5, 1.0]]))
    assert heat.shape == (1, 3, 3) and heat.dtype == np.uint8
    assert len({tuple(rgb) for rgb in heat[0].tolist()}) == 3  # three values, three colours
