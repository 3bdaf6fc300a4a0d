"""Evaluation metrics against hand-computed answers, the CLIP path with a locally built tiny CLIP, and the
ground-truth metrics on a generated scene whose edit is known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError
from relevance_nerf2nerf.evaluation import metrics
from relevance_nerf2nerf.evaluation.clip import (
    ClipEmbedder,
    clip_metrics,
    directional_similarity,
    edit_consistency,
    frame_consistency,
    image_similarity,
    text_image_similarity,
)
from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth, target_of
from relevance_nerf2nerf.scenes import generate_scene, render_views


# --- CLIP similarities on known embeddings --------------------------------------------------------
def test_clip_similarities_on_known_vectors():
    before = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    after = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # changes (0, 1) and (1, 0)
    text_in, text_out = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 3.0])
    assert directional_similarity(before, after, text_in, text_out) == pytest.approx(0.5)  # mean(1, 0)
    assert image_similarity(before, after) == pytest.approx((1 / math.sqrt(2) + 1.0) / 2)
    assert text_image_similarity(after, text_out) == pytest.approx(1 / math.sqrt(2) / 2)
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    assert frame_consistency(frames) == pytest.approx(0.5)  # cos 0 then cos 1
    assert edit_consistency(before, after) == pytest.approx(0.0)  # (0, 1) vs (1, 0)
    assert directional_similarity(before, before, text_in, text_out) == 0.0  # no change: cosine 0, not NaN
    with pytest.raises(InvalidInputError, match="two"):
        frame_consistency(frames[:1])


def test_tiny_clip_embeds_rgb_images_normalised(tiny_clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel

    clip = ClipEmbedder(tiny_clip_dir)
    images = torch.rand(3, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    embeddings = clip.images(images, batch_size=2)
    assert embeddings.shape == (3, 16)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    # the same numbers as transformers' own preprocessing of the RGB uint8 arrays (channels in RGB order)
    model, processor = (
        CLIPModel.from_pretrained(tiny_clip_dir),
        CLIPImageProcessor.from_pretrained(tiny_clip_dir),
    )
    pixels = processor(images=[(im * 255).round().byte().numpy() for im in images], return_tensors="pt")
    reference = model(pixel_values=pixels["pixel_values"], input_ids=torch.zeros(1, 2, dtype=torch.long))
    expected = torch.nn.functional.normalize(reference.image_embeds, dim=-1)
    assert torch.allclose(clip.images((images * 255).round() / 255), expected, atol=2e-3)  # resampling
    swapped = clip.images(images.flip(-1))  # BGR instead of RGB is a different input
    assert (swapped - embeddings).abs().max() > 2e-2
    texts = clip.texts(["a photo of the red cube", "a photo of the blue cube"])
    assert texts.shape == (2, 16) and torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)
    result = clip_metrics(clip, images, images, "a red cube", "a blue cube")
    assert result["clip_image_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert result["clip_directional_similarity"] == 0.0 and result["clip_frame_consistency"] < 1.0
    with pytest.raises(InvalidInputError, match="caption is empty"):
        clip.texts([" "])


def test_missing_clip_folder_is_one_line(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        ClipEmbedder(tmp_path)


# --- pixel metrics --------------------------------------------------------------------------------
def test_psnr_outside_a_mask_ignores_the_inside():
    before = torch.zeros(2, 4, 4, 3)
    after = torch.full((2, 4, 4, 3), 0.1)
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[:, :2] = True
    after[region] = 1.0  # a large change inside the edited region only
    assert metrics.psnr_outside(after, before, region) == pytest.approx(20.0)  # MSE 0.01 outside
    assert metrics.psnr_outside(after, before, None) < 5.0
    with pytest.raises(InvalidInputError, match="covers every pixel"):
        metrics.psnr_outside(after, before, torch.ones(2, 4, 4, dtype=torch.bool))


def test_ssim_outside_a_mask():
    generator = torch.Generator().manual_seed(0)
    before = torch.rand(1, 32, 32, 3, generator=generator)
    assert metrics.ssim_outside(before, before.clone(), None) == pytest.approx(1.0, abs=1e-5)
    region = torch.zeros(1, 32, 32, dtype=torch.bool)
    region[:, :, :12] = True
    after = before.clone()
    after[region] = 1 - after[region]
    outside = metrics.ssim_outside(after, before, region)
    assert outside > metrics.ssim_outside(after, before, None) + 0.3
    far = torch.ones_like(region)
    far[:, :, 20:] = False  # pixels more than the 11-px window's half width from the change
    assert metrics.ssim_outside(after, before, far) == pytest.approx(1.0, abs=1e-5)


def test_lpips_is_unavailable_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert not metrics.lpips_available()
    assert metrics.lpips_or_unavailable(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3)) == "unavailable"


def test_colour_change_iou_and_nearest_colour():
    before = torch.zeros(1, 2, 2, 3)
    before[..., 0] = 1.0  # red
    after = before.clone()
    mask = torch.tensor([[[True, False], [False, False]]])
    after[0, 0, 0] = torch.tensor([1.0, 0.3, 0.4])  # moved by (0, 0.3, 0.4): distance 0.5
    after[0, 1, 1] = 0.0  # outside the mask: ignored
    assert metrics.colour_change(after, before, mask) == pytest.approx(0.5)
    changes = metrics.object_colour_changes(after, before, {"a": mask, "hidden": torch.zeros_like(mask)})
    assert changes == {"a": pytest.approx(0.5)}
    references = {"red": torch.tensor([1.0, 0, 0]), "blue": torch.tensor([0, 0, 1.0])}
    assert metrics.nearest_colour(torch.tensor([0.2, 0.1, 0.7]), references) == "blue"
    predicted = torch.tensor([True, True, False, False])
    truth = torch.tensor([True, False, True, False])
    assert metrics.iou(predicted, truth) == pytest.approx(1 / 3)
    assert metrics.iou(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) == 1.0


# --- ground truth of a generated scene ------------------------------------------------------------
def test_ground_truth_metrics_of_an_exact_recolouring(tmp_path):
    info = generate_scene(tmp_path / "scene", seed=0, num_views=4, width=32, height=32)
    names = [p.name for p in info.image_paths][::-1]  # any view order: masks follow the names
    truth = load_ground_truth(info.output_dir, names)
    assert set(truth.masks) == {"cone", "cube", "sphere"}
    before = truth.images
    after = render_views(info.spec, info.cameras, recolour={"cube": "blue"})[0].flip(0)
    target, colour = target_of("make the cube blue", list(truth.masks))
    cube = truth.masks["cube"]
    result = ground_truth_metrics(after, before, truth, target, colour, relevance=cube.float(), tau=0.5)
    assert result["edit_hit"] and result["object_nearest_colour_after"] == "blue"
    assert result["object_colour_error_after"] < 0.02 < 0.3 < result["object_colour_error_before"]
    assert result["non_target_colour_change"] == {"cone": 0.0, "sphere": 0.0}
    assert result["max_non_target_colour_change"] == 0.0
    assert result["psnr_outside_object_after_vs_before"] == 100.0  # untouched outside: capped
    assert result["relevance_iou_with_object"] == 1.0
    assert result["base_psnr_vs_ground_truth"] == 100.0
    leaked = after.clone()
    leaked[truth.masks["sphere"]] += torch.tensor([0.0, 0.0, 0.1])  # the sphere drifts towards blue
    drift = ground_truth_metrics(leaked.clamp(0, 1), before, truth, target, colour)
    assert 0.0 < drift["non_target_colour_change"]["sphere"] <= 0.1 + 1e-6
    assert drift["non_target_colour_change"]["cone"] == 0.0
    with pytest.raises(InvalidInputError, match="no sphere"):
        target_of("make the sphere blue", ["cube"])
