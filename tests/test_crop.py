"""Crop-to-relevance: the crop geometry (pure), and the editor with cropping on a tiny real InstructPix2Pix:
pixels outside the mask stay bit-identical, an empty mask makes no model call, a near-full mask runs the full
frame exactly as without cropping, and a crop denoises fewer latent cells."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from relevance_nerf2nerf.cli.edit import main
from relevance_nerf2nerf.diffusion.crop import CropBox, CropSettings, crop_boxes
from relevance_nerf2nerf.diffusion.editor import RelevanceEditor, load_editor
from relevance_nerf2nerf.errors import InvalidInputError

INSTRUCTION = "make the ball blue"
NO_MARGIN = CropSettings(margin=0.0, min_size=0.0)


def box_mask(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(1, 1, h, w, dtype=torch.bool)
    mask[..., rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


# --- geometry ------------------------------------------------------------------------------------------
def test_box_is_the_bounding_box_rounded_outward_to_the_grid():
    (box,) = crop_boxes(box_mask(64, 64, (17, 30), (9, 40)), grid=8, settings=NO_MARGIN)
    assert box == CropBox(top=16, left=8, height=16, width=32)  # rows 16..32 hold 17..29, cols 8..40: 9..39


def test_margin_widens_every_side_then_rounds():
    settings = CropSettings(margin=0.1, min_size=0.0)  # 0.1 x 64 -> 7 px (ceil of 6.4)
    (box,) = crop_boxes(box_mask(64, 64, (24, 40), (24, 40)), grid=4, settings=settings)
    assert box == CropBox(top=16, left=16, height=32, width=32)  # 24 - 7 = 17 -> 16; 40 + 7 = 47 -> 48


def test_min_size_grows_around_the_mask():
    settings = CropSettings(margin=0.0, min_size=0.5)
    (box,) = crop_boxes(box_mask(64, 128, (30, 34), (60, 64)), grid=4, settings=settings)
    assert (box.height, box.width) == (32, 64)  # half of each side
    assert box.top <= 30 and box.top + box.height >= 34 and box.left <= 60 and box.left + box.width >= 64


@pytest.mark.parametrize(("rows", "cols"), [((0, 3), (0, 3)), ((61, 64), (58, 64))])
def test_boxes_stay_inside_the_image_at_its_borders(rows, cols):
    settings = CropSettings(margin=0.1, min_size=0.4)
    (box,) = crop_boxes(box_mask(64, 64, rows, cols), grid=8, settings=settings)
    assert box.top >= 0 and box.left >= 0 and box.top + box.height <= 64 and box.left + box.width <= 64
    assert box.height == 32 and box.width == 32  # min size 25.6 -> 32 on the grid, shifted, not cut
    assert box.top <= rows[0] and box.top + box.height >= rows[1]
    assert box.left <= cols[0] and box.left + box.width >= cols[1]


def test_odd_image_sizes_use_the_frame_padded_to_the_grid():
    (box,) = crop_boxes(box_mask(61, 45, (55, 61), (40, 45)), grid=8, settings=NO_MARGIN)
    assert box == CropBox(top=48, left=40, height=16, width=8)  # reaches the padded frame's edge (64 x 48)
    assert box.latents(8) == (slice(6, 8), slice(5, 6))


def test_empty_mask_has_no_box_and_near_full_mask_is_the_full_frame():
    masks = torch.cat([torch.zeros(1, 1, 32, 32, dtype=torch.bool), box_mask(32, 32, (1, 31), (2, 30))])
    assert crop_boxes(masks, grid=4, settings=NO_MARGIN) == [None, CropBox(0, 0, 32, 32)]
    quarter = box_mask(32, 32, (8, 24), (8, 24))
    assert crop_boxes(quarter, 4, CropSettings(0.0, 0.0, full_frame_above=0.2)) == [CropBox(0, 0, 32, 32)]


def test_a_batch_shares_the_largest_box_size():
    masks = torch.cat([box_mask(64, 64, (4, 12), (4, 12)), box_mask(64, 64, (30, 60), (40, 50))])
    boxes = crop_boxes(masks, grid=4, settings=NO_MARGIN)
    assert {(b.height, b.width) for b in boxes} == {(32, 12)}
    for box, (rows, cols) in zip(boxes, [((4, 12), (4, 12)), ((30, 60), (40, 50))], strict=True):
        assert box.top <= rows[0] and box.top + box.height >= rows[1] and box.top % 4 == 0
        assert box.left <= cols[0] and box.left + box.width >= cols[1] and box.left % 4 == 0


@pytest.mark.parametrize("kwargs", [dict(margin=-0.1), dict(min_size=1.5), dict(full_frame_above=0.0)])
def test_bad_crop_settings_are_refused(kwargs):
    with pytest.raises(InvalidInputError, match="crop"):
        CropSettings(**kwargs)


# --- the editor with cropping -------------------------------------------------------------------------
class CountingBackend:
    """Exact double around a real backend: counts model calls and the latent cells each UNet call denoises."""

    def __init__(self, inner):
        self.inner, self.calls, self.cells = inner, {"encode": 0, "decode": 0, "unet": 0}, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, images):
        self.calls["encode"] += 1
        return self.inner.encode(images)

    def decode(self, latents):
        self.calls["decode"] += 1
        return self.inner.decode(latents)

    def predict_noise(self, z_t, t, condition, text_embeddings, with_uncond=True):
        self.calls["unet"] += 1
        self.cells += z_t.shape[0] * z_t.shape[-2] * z_t.shape[-1]
        return self.inner.predict_noise(z_t, t, condition, text_embeddings, with_uncond)


@pytest.fixture(scope="module")
def editor(tiny_ip2p_dir):
    return load_editor(tiny_ip2p_dir)


def scene_inputs(seed: int = 0, size: tuple[int, int] = (48, 40)):
    g = torch.Generator().manual_seed(seed)
    render = torch.rand(1, 3, *size, generator=g)
    original = torch.rand(1, 3, *size, generator=g)
    relevance = torch.zeros(1, 1, *size)
    relevance[..., 10:25, 12:27] = 0.9
    return render, original, relevance


def edit(editor, render, original, relevance, crop, seed=0, **kwargs):
    settings = dict(num_steps=3, start_noise=0.6, mask_threshold=0.5) | kwargs
    return editor.edit(
        render, INSTRUCTION, condition_image=original, relevance=relevance, composite_source=original,
        generator=torch.Generator().manual_seed(seed), crop=crop, **settings,
    )  # fmt: skip


def test_cropped_edit_keeps_unmasked_pixels_bit_identical_and_denoises_fewer_cells(editor):
    render, original, relevance = scene_inputs()
    counters = {}
    results = {}
    for name, crop in (("full", None), ("crop", CropSettings(margin=0.05, min_size=0.0))):
        backend = CountingBackend(editor.backend)
        results[name] = edit(RelevanceEditor(backend), render, original, relevance, crop)
        counters[name] = backend.cells
    cropped, full = results["crop"], results["full"]
    assert torch.equal(cropped.mask, relevance >= 0.5) and torch.equal(cropped.relevance, relevance)
    outside = ~cropped.mask.expand_as(original)
    assert torch.equal(cropped.image[outside], original[outside])
    assert not torch.equal(cropped.image[~outside], original[~outside])  # the crop was really edited
    assert counters["crop"] < 0.5 * counters["full"]
    assert torch.equal(full.image[outside], cropped.image[outside])


def test_cropped_batch_with_an_odd_size_keeps_unmasked_pixels(editor):
    render, original, relevance = scene_inputs(size=(47, 45))
    relevance = torch.cat([relevance, relevance.flip(-1).roll(9, dims=-2)])
    render, original = torch.cat([render, render.flip(-1)]), torch.cat([original, original.flip(-2)])
    result = editor.edit(
        render, INSTRUCTION, condition_image=original, relevance=relevance, composite_source=original,
        num_steps=2, start_noise=0.5, generator=[torch.Generator().manual_seed(i) for i in range(2)],
        crop=CropSettings(),
    )  # fmt: skip
    outside = ~result.mask.expand_as(original)
    assert torch.equal(result.image[outside], original[outside])
    assert not torch.equal(result.image[~outside], original[~outside])


def test_empty_mask_skips_every_model_call(editor):
    render, original, _ = scene_inputs()
    backend = CountingBackend(editor.backend)
    result = edit(RelevanceEditor(backend), render, original, torch.zeros(1, 1, 48, 40), CropSettings())
    assert backend.calls == {"encode": 0, "decode": 0, "unet": 0}
    assert torch.equal(result.image, original) and not result.mask.any()


def test_near_full_mask_runs_the_full_frame_exactly_as_without_cropping(editor):
    render, original, _ = scene_inputs()
    relevance = torch.full((1, 1, 48, 40), 0.9)
    relevance[..., :3, :3] = 0.0
    backend = CountingBackend(editor.backend)
    cropped = edit(RelevanceEditor(backend), render, original, relevance, CropSettings())
    assert backend.cells == 3 * 24 * 20  # three UNet calls over the whole 24 x 20 latent grid
    assert torch.equal(cropped.image, edit(editor, render, original, relevance, None).image)


def test_computed_relevance_is_the_uncropped_one(editor):
    image = scene_inputs(size=(32, 32))[0]
    for start_noise in (1.0, 0.8):  # relevance in its own call, or from the first guidance call
        settings = dict(num_steps=2, start_noise=start_noise, mask_threshold=0.6)
        full = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(5), **settings)
        cropped = editor.edit(
            image, INSTRUCTION, generator=torch.Generator().manual_seed(5), crop=CropSettings(), **settings
        )
        torch.testing.assert_close(cropped.relevance, full.relevance, atol=1e-5, rtol=0)
        outside = ~cropped.mask.expand_as(image)
        assert torch.equal(cropped.image[outside], image[outside])


@pytest.mark.parametrize("start_noise", [1.0, 0.8, 0.5])  # relevance: its own call / the first guidance call
def test_computed_relevance_whole_frame_crop_is_bit_identical_to_uncropped(editor, start_noise):
    """Crop box = the whole frame: the latent mask is the computed latent relevance >= tau, as uncropped (an
    average-pooled upsample of it would move the mask's edge cells)."""
    image = scene_inputs(size=(32, 32))[0]
    settings = dict(num_steps=2, start_noise=start_noise, mask_threshold=0.45)
    full = editor.edit(image, INSTRUCTION, generator=torch.Generator().manual_seed(5), **settings)
    whole = CropSettings(min_size=1.0)  # every box grows to the whole frame
    generator = torch.Generator().manual_seed(5)
    cropped = editor.edit(image, INSTRUCTION, generator=generator, crop=whole, **settings)
    assert 0 < int(full.mask.sum()) < full.mask.numel()  # a partial mask: its edge cells matter
    assert torch.equal(cropped.mask, full.mask) and torch.equal(cropped.image, full.image)


def test_relevance_edit_crop_flag_keeps_unmasked_pixels(tiny_ip2p_dir, tmp_path):
    source = np.random.default_rng(0).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    Image.fromarray(source).save(tmp_path / "in.png")
    out = tmp_path / "edited.png"
    args = ["--image", str(tmp_path / "in.png"), "--instruction", INSTRUCTION, "--output", str(out)]
    assert main([*args, "--model", str(tiny_ip2p_dir), "--steps", "2", "--crop-to-relevance"]) == 0
    assert json.loads((tmp_path / "edited.json").read_text())["crop_to_relevance"] is True
    mask = np.asarray(Image.open(tmp_path / "edited_mask.png")) > 0
    edited = np.asarray(Image.open(out))
    assert np.array_equal(edited[~mask], source[~mask]) and not np.array_equal(edited[mask], source[mask])
