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
    with pytest.raises((InvalidInputError, ModelNotFoundError), match="config.json"):
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
    assert metrics.ssim_outside(after, before, None) < 0.7
    changed_outside = after.clone()
    changed_outside[:, :, 28:] = 0.5  # a change far from the region counts
    assert metrics.ssim_outside(changed_outside, before, region) < 0.9


def test_ssim_outside_is_one_when_only_the_inside_changed():
    """No SSIM window that touches the excluded region contributes: an inside-only change, however large,
    leaves SSIM outside at 1 (the full map averaged over outside pixels gave less, from windows straddling
    the region's edge)."""
    generator = torch.Generator().manual_seed(1)
    before = torch.rand(2, 40, 40, 3, generator=generator)
    region = torch.zeros(2, 40, 40, dtype=torch.bool)
    region[0, 10:20, 12:24] = True
    region[1, 25:35, 0:8] = True
    after = before.clone()
    after[region] = 1 - after[region]
    assert metrics.ssim_outside(after, before, region) == pytest.approx(1.0, abs=1e-12)
    keep = metrics.window_clear_of(region)
    assert not keep[0, 15, 28] and keep[0, 15, 29] and keep[0, 4, 15] and not keep[0, 5, 15]
    with pytest.raises(InvalidInputError, match="no SSIM window"):
        metrics.ssim_outside(after, before, torch.ones(2, 40, 40, dtype=torch.bool))


def test_per_view_values_and_their_spread():
    before = torch.zeros(3, 4, 4, 3)
    after = before.clone()
    after[0] = 0.1  # MSE 0.01: 20 dB
    after[1] = 0.01  # MSE 1e-4: 40 dB
    region = torch.zeros(3, 4, 4, dtype=torch.bool)
    region[2] = True  # nothing outside in view 2: undefined there
    values = metrics.per_view(metrics.psnr_outside, after, before, region)
    assert values[0] == pytest.approx(20.0) and values[1] == pytest.approx(40.0) and values[2] is None
    summary = metrics.spread(values)
    assert summary["mean"] == pytest.approx(30.0) and summary["std"] == pytest.approx(math.sqrt(200.0))
    assert (summary["min"], summary["max"], summary["views"]) == (pytest.approx(20.0), pytest.approx(40.0), 2)
    assert metrics.spread([None])["mean"] is None and metrics.spread([1.0])["std"] == 0.0


def test_psnr_is_torchmetrics_capped_for_identical_inputs():
    a = torch.zeros(2, 3, 3)
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert metrics.psnr(a, a) == metrics.MAX_PSNR


# --- matched strength -----------------------------------------------------------------------------
def test_matched_strength_interpolates_at_the_first_crossing_of_the_weaker_best_level():
    """Hand-made curves: IN2N gets down to error 0.1 (then overshoots back up), ours only to 0.25. The
    matched level is 0.25 (the weaker run's best); IN2N's figures come from its first crossing of 0.25,
    a quarter of the way from (0.3, 30) to (0.1, 20): 27.5, non-target change 0.05 + 0.25 * 0.2."""
    from relevance_nerf2nerf.evaluation import strength

    def point(step, error, psnr, change):
        return {"step": step, "target_colour_error": error, "psnr_outside": psnr, "psnr_db": psnr,
                "non_target_colour_change": {"a": change}}  # fmt: skip

    in2n = [point(0, 0.4, 40.0, 0.0), point(5, 0.3, 30.0, 0.05), point(10, 0.1, 20.0, 0.25),
            point(15, 0.3, 10.0, 0.4)]  # fmt: skip
    ours = [point(0, 0.4, 40.0, 0.0), point(5, 0.35, 36.0, 0.0), point(10, 0.25, 32.0, 0.02)]
    result = strength.compare_at_matched_strength({"IN2N": in2n, "ours": ours})
    assert result["target_colour_error"] == pytest.approx(0.25)
    assert result["best_levels"] == {"IN2N": pytest.approx(0.1), "ours": pytest.approx(0.25)}
    assert result["methods"]["IN2N"]["psnr_outside"] == pytest.approx(27.5)
    assert result["methods"]["IN2N"]["non_target_colour_change/a"] == pytest.approx(0.1)
    assert result["methods"]["IN2N"]["step"] == pytest.approx(6.25)
    # a dB figure goes through its MSE: 1e-3 + 0.25 * (1e-2 - 1e-3) = 3.25e-3
    assert result["methods"]["IN2N"]["psnr_db"] == pytest.approx(-10 * math.log10(3.25e-3))
    assert result["methods"]["ours"]["psnr_outside"] == pytest.approx(32.0)
    assert result["methods"]["ours"]["non_target_colour_change/a"] == pytest.approx(0.02)
    assert strength.figures_at_level(ours, 0.1) is None  # ours never gets there
    assert strength.figures_at_level(in2n, 0.5)["psnr_outside"] == 40.0  # already there at the start


# --- the one region of relevance-eval scene -------------------------------------------------------
def test_comparison_region_is_the_ground_truth_else_the_base_relevance_never_the_run():
    from relevance_nerf2nerf.evaluation.regions import comparison_region

    truth = torch.zeros(1, 4, 4, dtype=torch.bool)
    truth[0, :2] = True
    base_relevance = torch.zeros(1, 4, 4)
    base_relevance[0, :, :1] = 0.9
    region, name = comparison_region(truth, base_relevance)
    assert region is truth and "ground-truth" in name
    region, name = comparison_region(None, base_relevance)
    assert torch.equal(region, base_relevance >= 0.5)
    assert name == "base's relevance for the instruction >= 0.5"
    assert comparison_region(None, None) == (None, "none (whole image)")


def test_region_of_a_run_depends_on_the_base_and_instruction_not_on_the_runs_tau(tmp_path):
    """Two edited runs of one base that differ only in tau get the same excluded region: the toy editor's
    relevance of the base renders for the instruction at 0.5, deterministic."""
    from types import SimpleNamespace

    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
    from relevance_nerf2nerf.evaluation.regions import region_of_run

    info = generate_scene(tmp_path / "scene", seed=0, num_views=2, width=32, height=32)
    before = render_views(info.spec, info.cameras)[0]
    runs = [SimpleNamespace(instruction="make the cube blue", editor_model=str(TOY_EDITOR_DIR), t_rel=0.8,
                            relevance_iqr_ratio=3.5, mask_threshold=tau) for tau in (0.0, 0.7)]  # fmt: skip
    (first, name), (second, _) = (region_of_run(run, before, None) for run in runs)
    assert name.startswith("base's relevance") and first.shape == (2, 32, 32) and first.dtype == torch.bool
    assert torch.equal(first, second) and 0 < first.float().mean() < 1
    truth = torch.ones(2, 32, 32, dtype=torch.bool)
    assert region_of_run(runs[0], before, truth)[0] is truth
    no_instruction = SimpleNamespace(instruction="")
    assert region_of_run(no_instruction, before, None) == (None, "none (whole image)")


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
    assert result["psnr_whole_image_after_vs_before"] < 40.0  # the paper's Edit PSNR sees the cube change
    per_view = result["per_view"]
    assert per_view["psnr_outside_object"]["per_view"] == [100.0] * 4
    assert per_view["ssim_outside_object"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert per_view["max_non_target_colour_change"]["max"] == 0.0
    assert per_view["object_colour_change"]["min"] > 0.3
    leaked = after.clone()
    leaked[truth.masks["sphere"]] += torch.tensor([0.0, 0.0, 0.1])  # the sphere drifts towards blue
    drift = ground_truth_metrics(leaked.clamp(0, 1), before, truth, target, colour)
    assert 0.0 < drift["non_target_colour_change"]["sphere"] <= 0.1 + 1e-6
    assert drift["non_target_colour_change"]["cone"] == 0.0
    with pytest.raises(InvalidInputError, match="no sphere"):
        target_of("make the sphere blue", ["cube"])
