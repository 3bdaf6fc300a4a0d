"""The editor on a tiny real InstructPix2Pix (built with save_pretrained, loaded through load_editor), with
exact test doubles around its backend for the relevance and blending checks."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from relevance_nerf2nerf.diffusion.backend import NoisePredictions
from relevance_nerf2nerf.diffusion.editor import RelevanceEditor, load_editor
from relevance_nerf2nerf.diffusion.ip2p import oom_advice
from relevance_nerf2nerf.diffusion.sampler import add_noise, ddim_timesteps, level_to_timestep
from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError, RelevanceError
from relevance_nerf2nerf.toy_editor.build import DEFAULT_WORDS, build_instruct_pix2pix

INSTRUCTION = "make the ball blue"


@pytest.fixture(scope="module")
def editor(tiny_ip2p_dir):
    return load_editor(tiny_ip2p_dir)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_image(h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=seeded(seed))


class SpyBackend:
    """Exact double around a real backend: records every UNet call and optionally adds ``planted`` to
    eps_text, so that eps_text - eps_img is exactly ``planted`` (zero outside the planted region)."""

    def __init__(self, inner, planted: torch.Tensor | None = None):
        self.inner, self.planted, self.calls = inner, planted, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_noise(self, z_t, t, condition, text_embeddings, with_uncond=True):
        self.calls.append((z_t.clone(), t, with_uncond))
        preds = self.inner.predict_noise(z_t, t, condition, text_embeddings, with_uncond)
        if self.planted is None:
            return preds
        return NoisePredictions(preds.eps_img + self.planted, preds.eps_img, preds.eps_uncond)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


def test_tiny_model_loads_through_the_user_path(editor, tiny_ip2p_dir):
    backend = editor.backend
    assert backend.vae_scale_factor == 2  # from the VAE config, two blocks
    assert backend.num_train_timesteps == 1000 and backend.steps_offset == 1
    assert backend.alphas_cumprod[0].item() == pytest.approx(1 - 0.00085)
    config = json.loads((tiny_ip2p_dir / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "EulerAncestralDiscreteScheduler"  # as the hub ships it, left untouched
    for word in DEFAULT_WORDS:
        assert len(backend.tokenizer(word, add_special_tokens=False).input_ids) == 1


def test_planted_region_is_localised_and_outside_stays_bit_identical(editor):
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = ((yy - 30.5) ** 2 + (xx - 34.5) ** 2 <= 20.0**2)[None, None]  # ~31% of the image
    planted = (F.avg_pool2d(disc.float(), 2) >= 0.5).float()
    planted[0, 0, 15, 17] = 20.0  # an outlier the IQR clamp must tame, or the region drowns
    double = RelevanceEditor(SpyBackend(editor.backend, planted))
    image = make_image(64, 64)

    rel = double.relevance(image, INSTRUCTION, generator=seeded(0))
    assert rel.latent.shape == (1, 1, 32, 32) and rel.pixel.shape == (1, 1, 64, 64)
    assert iou(rel.mask(0.3), disc) >= 0.9

    result = double.edit(image, INSTRUCTION, mask_threshold=0.3, num_steps=3, generator=seeded(1))
    # the edit's map comes from its first guidance call, the same computation batched differently: equal up to
    # float rounding, so the masks agree wherever the relevance is not within rounding of tau
    assert torch.allclose(result.relevance, rel.pixel, atol=1e-5)
    decided = (rel.pixel - 0.3).abs() > 1e-5
    assert torch.equal(result.mask[decided], rel.mask(0.3)[decided])
    outside = ~result.mask.expand_as(image)
    assert torch.equal(result.image[outside], image[outside])
    assert not torch.equal(result.image[~outside], image[~outside])


def test_tau_zero_equals_diffusers_instruct_pix2pix(editor, tiny_ip2p_dir):
    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

    image = make_image(seed=1)
    ours = editor.edit(image, INSTRUCTION, mask_threshold=0.0, num_steps=4, generator=seeded(3))
    assert ours.mask.all()
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        tiny_ip2p_dir, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="leading", clip_sample=False, set_alpha_to_one=False
    )
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        INSTRUCTION,
        image=image,
        num_inference_steps=4,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        latents=torch.randn(1, 4, 16, 16, generator=seeded(3)),  # the editor's first draw
        output_type="pt",
    ).images
    assert torch.equal(ours.image, reference)
    assert torch.equal(editor.edit_plain(image, INSTRUCTION, num_steps=4, generator=seeded(3)), reference)


@pytest.mark.parametrize("start_noise", [1.0, 0.5])
def test_unmasked_latents_follow_the_t_minus_1_noise_level(editor, start_noise):
    spy = SpyBackend(editor.backend)
    image = make_image(seed=2)
    empty = torch.zeros(1, 1, 32, 32)  # relevance 0 everywhere, tau = 1: nothing is editable
    result = RelevanceEditor(spy).edit(
        image, INSTRUCTION, relevance=empty, mask_threshold=1.0, num_steps=5, start_noise=start_noise,
        generator=seeded(4),
    )  # fmt: skip
    assert torch.equal(result.image, image) and not result.mask.any()
    alphas = spy.alphas_cumprod
    z0 = spy.encode(image)
    eps = torch.randn(z0.shape, generator=seeded(4))
    steps = [t for _, t, _ in spy.calls]
    assert steps == ddim_timesteps(5, start_noise, 1000, 1)
    first = spy.calls[0][0]
    assert torch.equal(first, eps if start_noise == 1.0 else add_noise(z0, eps, alphas[steps[0]]))
    for (z, t, with_uncond), t_before in zip(spy.calls[1:], steps, strict=False):
        assert with_uncond
        assert torch.equal(z, add_noise(z0, eps, alphas[t]))  # blended at the level the next step sees
        assert not torch.allclose(z, add_noise(z0, eps, alphas[t_before]), atol=1e-3)


def test_relevance_comes_from_the_first_guidance_call_when_levels_coincide(editor):
    image = make_image(seed=5)
    spy = SpyBackend(editor.backend)
    shared = RelevanceEditor(spy).edit(
        image, INSTRUCTION, start_noise=0.8, t_rel=0.8, num_steps=3, generator=seeded(6)
    )
    assert [(t, u) for _, t, u in spy.calls][0] == (level_to_timestep(0.8, 1000), True)
    assert len(spy.calls) == 3 and all(u for _, _, u in spy.calls)  # no extra relevance pass
    separate = editor.relevance(image, INSTRUCTION, t_rel=0.8, generator=seeded(6))  # same noise draw
    assert torch.equal(shared.relevance, separate.pixel)

    spy.calls.clear()
    RelevanceEditor(spy).edit(image, INSTRUCTION, num_steps=3, generator=seeded(6))
    assert [u for _, _, u in spy.calls] == [False, True, True, True]


def test_seeds_reproduce_and_differ(editor):
    image = make_image(seed=7)
    a = editor.edit(image, INSTRUCTION, num_steps=3, generator=seeded(8))
    b = editor.edit(image, INSTRUCTION, num_steps=3, generator=seeded(8))
    c = editor.edit(image, INSTRUCTION, num_steps=3, generator=seeded(9))
    assert torch.equal(a.image, b.image) and torch.equal(a.relevance, b.relevance)
    assert not torch.equal(a.relevance, c.relevance)
    r1 = editor.relevance(image, INSTRUCTION, num_draws=2, generator=seeded(1))
    r2 = editor.relevance(image, INSTRUCTION, num_draws=2, generator=seeded(1))
    assert torch.equal(r1.latent, r2.latent)
    assert 0.0 == r1.latent.min().item() and r1.latent.max().item() == 1.0


def test_given_relevance_odd_sizes_batches_and_composite_source(editor):
    image = torch.rand(2, 3, 30, 27, generator=seeded(10))
    source = torch.rand(2, 3, 30, 27, generator=seeded(11))
    relevance = torch.zeros(2, 1, 30, 27)
    relevance[:, :, 5:20, 3:15] = 0.9
    result = editor.edit(
        image, INSTRUCTION, relevance=relevance, composite_source=source, condition_image=source,
        num_steps=2, generator=seeded(12),
    )  # fmt: skip
    assert result.image.shape == (2, 3, 30, 27)
    assert torch.equal(result.relevance, relevance)
    assert torch.equal(result.mask, relevance >= 0.5)
    outside = ~result.mask.expand_as(image)
    assert torch.equal(result.image[outside], source[outside])
    assert ((result.image >= 0) & (result.image <= 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instruction": "  "}, "instruction is empty"),
        ({"mask_threshold": 1.5}, "tau"),
        ({"text_guidance": -1.0}, "text guidance"),
        ({"num_steps": 0}, "steps"),
        ({"start_noise": 0.0}, "start noise"),
        ({"image": torch.full((1, 3, 8, 8), 2.0)}, r"\[0, 1\]"),
        ({"image": torch.rand(3, 8, 8)}, r"\(B,3,H,W\)"),
        ({"relevance": torch.zeros(1, 1, 4, 4)}, "must match"),
    ],
)
def test_bad_inputs_raise_invalid_input(editor, kwargs, message):
    args = {"image": torch.rand(1, 3, 8, 8), "instruction": INSTRUCTION, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        editor.edit(args.pop("image"), args.pop("instruction"), **args)


def test_loading_errors_say_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_editor(tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="not an InstructPix2Pix directory"):
        load_editor(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"offline\?.*local directory"):
        load_editor("nobody/no-such-model")  # the hub is off in tests (conftest)
    with pytest.raises(RelevanceError, match="fp16"), oom_advice():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_non_epsilon_outputs_are_converted_to_epsilon(editor, prediction_type):
    gen = seeded(13)
    z0, eps = torch.randn(1, 4, 4, 4, generator=gen), torch.randn(1, 4, 4, 4, generator=gen)
    t = 600
    alpha = editor.backend.alphas_cumprod[t]
    target = alpha**0.5 * eps - (1 - alpha) ** 0.5 * z0 if prediction_type == "v_prediction" else z0
    backend = copy.copy(editor.backend)
    backend.prediction_type = prediction_type
    backend.unet = lambda x, *args, **kwargs: (target.repeat(x.shape[0], 1, 1, 1),)
    preds = backend.predict_noise(add_noise(z0, eps, alpha), t, z0, backend.text_embeddings("x"))
    for branch in (preds.eps_text, preds.eps_img, preds.eps_uncond):
        torch.testing.assert_close(branch, eps, rtol=0, atol=1e-5)


def test_builder_sizes_factor_and_v_prediction_model(tmp_path):
    directory = build_instruct_pix2pix(
        tmp_path / "m", unet_channels=(16, 32), vae_channels=(16, 16, 16), text_dim=16, text_layers=1,
        vocabulary=("paint", "zebra"), prediction_type="v_prediction", scheduler="ddim",
    )  # fmt: skip
    small = load_editor(directory)
    assert small.backend.vae_scale_factor == 4 and small.backend.prediction_type == "v_prediction"
    assert len(small.backend.tokenizer("paint zebra", add_special_tokens=False).input_ids) == 2
    result = small.edit(torch.rand(1, 3, 10, 13, generator=seeded(14)), "paint the zebra", num_steps=2)
    assert result.image.shape == (1, 3, 10, 13) and result.relevance.shape == (1, 1, 10, 13)
