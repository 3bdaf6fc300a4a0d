"""Batched view updates and memory options: a batch edited with one generator per image equals its images
edited one by one (editor and scene pipeline), an empty mask (cropped or not) keeps the view's current
image without calling the editor, and the memory-saving options change nothing but memory."""

from __future__ import annotations

import copy

import pytest
import torch

from relevance_nerf2nerf.diffusion.crop import CropSettings
from relevance_nerf2nerf.diffusion.editor import load_editor
from relevance_nerf2nerf.diffusion.ip2p import MemoryOptions, load_backend
from relevance_nerf2nerf.errors import InvalidInputError

INSTRUCTION = "make the cube blue"


@pytest.fixture(scope="module")
def editor(tiny_ip2p_dir):
    return load_editor(tiny_ip2p_dir)


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- the editor ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        dict(start_noise=0.4, mask_threshold=0.5, relevance="given"),
        dict(start_noise=1.0, mask_threshold=0.5),  # relevance in its own call, per-image noise
        dict(start_noise=0.8, mask_threshold=0.5),  # relevance from the first guidance call
        dict(start_noise=0.4, mask_threshold=0.3, relevance="given", crop=CropSettings(min_size=0.5)),
    ],
)
def test_a_batch_equals_its_images_edited_one_by_one(editor, settings):
    settings = dict(settings)
    renders, originals = images(3, seed=1), images(3, seed=2)
    relevance = None
    if settings.pop("relevance", None) == "given":
        relevance = torch.zeros(3, 1, 32, 32)
        relevance[..., 8:20, 10:22] = 0.8  # the same mask size, so cropped windows match too
        relevance[1] = relevance[1].roll(6, dims=-1)
    common = dict(condition_image=originals, composite_source=originals, num_steps=3, **settings)
    if relevance is None:  # relevance computed from the image itself, so that the first-call path can run
        common = dict(num_steps=3, **settings)
    batched = editor.edit(renders, INSTRUCTION, relevance=relevance, generator=generators(7, 8, 9), **common)
    for i, seed in enumerate((7, 8, 9)):
        one = slice(i, i + 1)
        single = editor.edit(
            renders[one], INSTRUCTION, relevance=None if relevance is None else relevance[one],
            generator=generators(seed), **{k: v[one] if torch.is_tensor(v) else v for k, v in common.items()},
        )  # fmt: skip
        # float tolerance: batched convolutions round differently; normalisation scales that up
        torch.testing.assert_close(batched.relevance[one], single.relevance, atol=2e-4, rtol=0)
        torch.testing.assert_close(batched.image[one], single.image, atol=1e-3, rtol=0)
        source = renders[one] if relevance is None else originals[one]
        assert not torch.equal(single.image, source)  # something was edited


def test_one_generator_per_image_is_checked(editor):
    with pytest.raises(InvalidInputError, match="one generator per image"):
        editor.edit(images(2), INSTRUCTION, num_steps=1, generator=generators(0))


def test_memory_options_change_nothing_but_memory(tiny_ip2p_dir, editor):
    backend = load_backend(tiny_ip2p_dir, memory=MemoryOptions.low_memory())
    assert backend.vae.use_slicing and backend.vae.use_tiling
    processors = {type(p).__name__ for p in backend.unet.attn_processors.values()}
    assert processors == {"SlicedAttnProcessor"}
    assert next(backend.text_encoder.parameters()).device.type == "cpu"
    settings = dict(num_steps=2, start_noise=0.6)
    saving = type(editor)(backend).edit(images(2), INSTRUCTION, generator=generators(0, 1), **settings)
    plain = editor.edit(images(2), INSTRUCTION, generator=generators(0, 1), **settings)
    torch.testing.assert_close(saving.image, plain.image, atol=1e-4, rtol=0)


# --- the scene pipeline --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from relevance_nerf2nerf.scenes import generate_scene

    info = generate_scene(tmp_path_factory.mktemp("scene"), seed=0, num_views=6, width=32, height=32)
    return info.output_dir


def make_pipeline(scene, editor, **options):
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny

    config = copy.deepcopy(relevance_nerf2nerf_tiny.config.pipeline)
    config.datamanager.data = scene
    config.datamanager.train_num_rays_per_batch = 256
    config.instruction = INSTRUCTION
    config.edit_noise_range = (0.5, 0.5)  # one start level: a batched event shares its first view's level
    for key, value in options.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    pipeline = config.setup(device="cpu", test_mode="val")
    pipeline.editor = editor
    return pipeline


def test_batched_view_updates_equal_sequential_ones(scene, editor):
    sequential, batched = make_pipeline(scene, editor), make_pipeline(scene, editor, views_per_update=3)
    torch.manual_seed(1)  # train-mode renders draw stratified samples from the global generator
    one_by_one = [sequential.edit_view() for _ in range(3)]
    torch.manual_seed(1)
    together = batched.edit_views()
    assert together == one_by_one and len(set(together)) == 3
    assert int(batched.datamanager.edits_done) == int(sequential.datamanager.edits_done) == 3
    for index in together:
        a = sequential.datamanager.edited_images[index].int()
        b = batched.datamanager.edited_images[index].int()
        assert (a - b).abs().max() <= 1  # float tolerance, stored as uint8
        original = (sequential.datamanager.original_image(index)[0].permute(1, 2, 0) * 255).round().int()
        assert not torch.equal(a, original)  # the views were really edited


class NoEditor:
    def relevance(self, *args, **kwargs):
        raise AssertionError("relevance must not be computed: the view already has its map")

    def edit(self, *args, **kwargs):
        raise AssertionError("the editor must not run on an empty mask")


@pytest.mark.parametrize("crop", [True, False])
def test_empty_mask_keeps_the_current_image_cropped_or_not(scene, monkeypatch, crop):
    """One situation, one behaviour: no editor call, the view's earlier edit stays, the schedule moves on."""
    pipeline = make_pipeline(scene, NoEditor(), crop_to_relevance=crop)
    datamanager = pipeline.datamanager
    index = datamanager.view_due(pipeline.config.seed)
    earlier_edit = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    datamanager.set_edited_image(index, earlier_edit)
    datamanager.set_relevance(index, torch.zeros(1, 1, 32, 32))
    before = datamanager.edited_images[index].clone()
    done = int(datamanager.edits_done)
    rgb = torch.rand(1, 3, 32, 32)
    monkeypatch.setattr(pipeline, "render_view", lambda i: (rgb, torch.zeros(1, 1, 32, 32)))
    assert pipeline.edit_view(index) == index
    assert torch.equal(datamanager.edited_images[index], before)  # the earlier edit is not reverted
    assert int(datamanager.edits_done) == done + 1  # the schedule moves on


@pytest.mark.parametrize(("option", "value"), [("views_per_update", 0), ("crop_margin", -0.5)])
def test_bad_speed_options_fail_at_construction(scene, editor, option, value):
    with pytest.raises(InvalidInputError):
        make_pipeline(scene, editor, **{option: value})
