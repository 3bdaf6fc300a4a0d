"""Does the toy editor really edit? Measured on held-out scenes through the public ``load_editor``.

For each held-out (render, "make the <shape> <colour>") pair, the edited object's mean colour (over its
ground-truth mask) is compared with the same object rendered in every named colour: a *hit* is when the
nearest one is the requested colour; the *colour error* is the RGB distance to the requested one. Plain
IP2P-style editing (tau = 0) and relevance-guided editing (tau = 0.5) are both measured, with the PSNR
outside the object against the input (how much the edit drifts elsewhere) and the relevance mask's IoU with
the object.

    python -m relevance_nerf2nerf.toy_editor.evaluate [--model-dir DIR] [--num-samples 24]
    python -m relevance_nerf2nerf.toy_editor.evaluate --model-dir NEW --compare-with OLD --num-samples 96
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO, postprocess, raw_relevance, upsample
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.errors import report_uncaught_errors_as_one_line
from relevance_nerf2nerf.evaluation.metrics import iou, mean_colour, nearest_colour, psnr_outside
from relevance_nerf2nerf.outputs import check_output_file, write_all
from relevance_nerf2nerf.scenes.render import cast
from relevance_nerf2nerf.scenes.spec import COLOURS, random_cameras, random_scene_spec
from relevance_nerf2nerf.toy_editor.data import HELD_OUT_SEED_OFFSET, confusable_colours, instruction

SPECIFICITY_IQR_RATIOS = (SCENE_IQR_RATIO, TOY_EDITOR_IQR_RATIO)
"""IQR ratios reported beside the paper's 1.5: the scene pipeline's (2), the demo's for the toy editor (3)."""


@dataclass
class HeldOutSample:
    """One held-out render with its instruction, the object it names and the ground truth to score an edit."""

    image: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    instruction: str
    target_colour: str
    mask: torch.Tensor  # (H, W) bool, the named object
    references: dict[str, torch.Tensor]  # colour name -> (3,) mean colour of the object rendered in it
    other_masks: dict[str, torch.Tensor]  # each other visible object -> (H, W) bool, target pixels excluded


def held_out_samples(
    num_samples: int,
    *,
    seed: int = 0,
    size: int = 64,
    num_objects: tuple[int, ...] = (3,),
    confusable_every: int = 0,
) -> list[HeldOutSample]:
    """One view of each of ``num_samples`` unseen scenes, with a random recolouring instruction.

    Args:
        num_samples (int): number of scenes (one view each).
        seed (int, default 0): which held-out set (scene seeds from ``HELD_OUT_SEED_OFFSET + 10_000 * seed``).
        size (int, default 64): image size in pixels.
        num_objects (tuple[int, ...], default (3,)): object counts, cycled over the scenes.
        confusable_every (int, default 0): when > 0, every this-many-th scene (the first included) is
            repainted by ``data.confusable_colours``: another object already has the requested colour and
            another the named object's own colour.
    """
    gen = torch.Generator().manual_seed(seed)
    samples: list[HeldOutSample] = []
    scene_seed = HELD_OUT_SEED_OFFSET + 10_000 * seed
    while len(samples) < num_samples:
        scene_seed += 1
        spec = random_scene_spec(scene_seed, num_objects=num_objects[len(samples) % len(num_objects)])
        gbuffer = cast(spec, random_cameras(1, size, size, seed=scene_seed))
        masks = {name: mask[0] for name, mask in gbuffer.masks().items()}
        visible = [o for o in spec.objects if masks[o.name].sum() >= 20]
        if not visible:
            continue
        obj = visible[int(torch.randint(len(visible), (1,), generator=gen))]
        others = [c for c in COLOURS if c != obj.colour]
        colour = others[int(torch.randint(len(others), (1,), generator=gen))]
        base = {o.name: o.colour for o in spec.objects}
        if confusable_every and len(samples) % confusable_every == 0:
            base = confusable_colours(spec.objects, obj, colour, random.Random(scene_seed))
        mask = masks[obj.name]
        references = {c: gbuffer.compose({**base, obj.name: c})[0][mask].mean(0) for c in COLOURS}
        image = gbuffer.compose(base).permute(0, 3, 1, 2)
        image = (image * 255).round() / 255  # what a PNG on disk holds
        other_masks = {o.name: masks[o.name] & ~mask for o in spec.objects if o is not obj}
        other_masks = {name: m for name, m in other_masks.items() if m.any()}
        samples.append(
            HeldOutSample(image, instruction(obj.shape, colour), colour, mask, references, other_masks)
        )
    return samples


def specificity_raw_maps(
    editor, samples: list[HeldOutSample], *, num_draws: int = 8, t_rel: float = DEFAULTS.t_rel, seed: int = 0
) -> list[torch.Tensor]:
    """Each sample's raw relevance difference (eq. 2 before post-processing, (1, 1, h, w) on the latent grid),
    computed once and scored at any IQR ratio by :func:`score_specificity`.

    Args:
        editor (RelevanceEditor): the editor whose relevance maps are measured.
        samples (list[HeldOutSample]): held-out renders (sizes a multiple of the VAE factor: no padding).
        num_draws (int, default 8): noise draws averaged per map (eq. 2 with K draws).
        t_rel (float, default 0.8): noise level of the relevance map.
        seed (int, default 0): seeds the noise of sample ``i`` with ``seed * 1000 + i``.
    """
    backend = editor.backend
    return [
        raw_relevance(
            backend, backend.encode(sample.image), backend.encode_condition(sample.image),
            backend.text_embeddings(sample.instruction), t_rel=t_rel, num_draws=num_draws,
            generator=torch.Generator().manual_seed(seed * 1000 + i),
        )  # fmt: skip
        for i, sample in enumerate(samples)
    ]


def score_specificity(
    raw_maps: list[torch.Tensor],
    samples: list[HeldOutSample],
    *,
    iqr_ratio: float = 1.5,
    tau: float = 0.5,
    non_targets_at_background: bool = False,
) -> dict[str, float]:
    """How well relevance singles out the named object, averaged over ``samples``, from their raw maps.

    Args:
        raw_maps (list[torch.Tensor]): :func:`specificity_raw_maps` of ``samples``.
        samples (list[HeldOutSample]): the held-out renders with ground-truth masks.
        iqr_ratio (float, default 1.5): outlier fence of the post-processing (the paper's 2D maps: 1.5).
        tau (float, default 0.5): mask threshold for the IoU.
        non_targets_at_background (bool, default False): before the IQR clamp, set the raw difference on
            every latent cell touched by a non-target object (and not by the target) to the background's
            median: the figures an editor would get whose difference there is no larger than on the
            background, i.e. the ceiling of this measure under the paper's post-processing on these scenes.

    Returns:
        Mean relevance inside the target, inside non-target objects (mean and per-scene maximum), on the
        background, the tau-mask IoU with the target, and the share of scenes whose target is the most
        relevant object.
    """
    rows = []
    for raw, sample in zip(raw_maps, samples, strict=True):
        if non_targets_at_background:
            cells = raw.shape[-2:]
            target_cells = _latent_cells(sample.mask, cells)
            other_cells = torch.zeros_like(target_cells)
            for m in sample.other_masks.values():
                other_cells |= _latent_cells(m, cells)
            other_cells &= ~target_cells
            raw = raw.clone()
            raw[0, 0][other_cells] = raw[0, 0][~(other_cells | target_cells)].median()
        rel = upsample(postprocess(raw, iqr_ratio), tuple(sample.mask.shape))[0, 0]
        objects = sample.mask.clone()
        others = [rel[m].mean().item() for m in sample.other_masks.values()]
        for m in sample.other_masks.values():
            objects |= m
        target = rel[sample.mask].mean().item()
        rows.append({
            "target": target,
            "non_target": sum(others) / len(others) if others else float("nan"),
            "non_target_max": max(others, default=float("nan")),
            "background": rel[~objects].mean().item(),
            "mask_iou": iou(rel >= tau, sample.mask),
            "target_most_relevant": float(all(target > o for o in others)),
        })  # fmt: skip
    return {key: float(torch.tensor([r[key] for r in rows]).nanmean()) for key in rows[0]}


def relevance_specificity(
    editor,
    samples: list[HeldOutSample],
    *,
    num_draws: int = 8,
    t_rel: float = DEFAULTS.t_rel,
    tau: float = 0.5,
    seed: int = 0,
    iqr_ratio: float = 1.5,
    non_targets_at_background: bool = False,
) -> dict[str, float]:
    """:func:`score_specificity` of ``editor``'s maps of ``samples`` (arguments as there and in
    :func:`specificity_raw_maps`).

    Args:
        editor (RelevanceEditor): the editor whose relevance maps are scored.
        samples (list[HeldOutSample]): held-out renders (:func:`held_out_samples`).
        num_draws (int, default 8): noise draws averaged per map.
        t_rel (float, default 0.8): noise level of the maps.
        tau (float, default 0.5): mask threshold for the mask IoU.
        seed (int, default 0): seeds the noise draws.
        iqr_ratio (float, default 1.5): IQR ratio of the post-processing.
        non_targets_at_background (bool, default False): set the raw difference on other objects to the
            background's (the measure's ceiling).
    """
    raw_maps = specificity_raw_maps(editor, samples, num_draws=num_draws, t_rel=t_rel, seed=seed)
    return score_specificity(
        raw_maps, samples, iqr_ratio=iqr_ratio, tau=tau, non_targets_at_background=non_targets_at_background
    )


SPECIFICITY_TARGETS: dict[str, tuple[str, float]] = {
    "target": (">=", 0.85), "non_target": ("<=", 0.35), "background": ("<=", 0.25), "mask_iou": (">=", 0.5),
}  # fmt: skip
"""The toy editor's specificity goals for :func:`score_specificity`'s figures: key -> (comparison, bound)."""


def specificity_targets_met(metrics: dict[str, float]) -> dict[str, bool]:
    """Which of :data:`SPECIFICITY_TARGETS` the figures of :func:`score_specificity` meet, by key.

    Args:
        metrics (dict[str, float]): figures of :func:`score_specificity`.
    """
    return {
        key: metrics[key] >= bound if op == ">=" else metrics[key] <= bound
        for key, (op, bound) in SPECIFICITY_TARGETS.items()
    }


def specificity_at_iqr_ratios(
    raw_maps: list[torch.Tensor], samples: list[HeldOutSample], iqr_ratios: tuple[float, ...]
) -> dict[str, dict[str, float]]:
    """:func:`score_specificity` of the same raw maps at each IQR ratio, keyed by the ratio.

    Args:
        raw_maps (list[torch.Tensor]): raw |eps_text - eps_img| maps of the samples
            (:func:`specificity_raw_maps`).
        samples (list[HeldOutSample]): the held-out renders the maps belong to.
        iqr_ratios (tuple[float, ...]): the ratios to post-process with.
    """
    return {f"{ratio:g}": score_specificity(raw_maps, samples, iqr_ratio=ratio) for ratio in iqr_ratios}


def _latent_cells(mask: torch.Tensor, cells: torch.Size) -> torch.Tensor:
    """Latent cells (h, w) that a pixel mask (H, W) touches."""
    return F.adaptive_max_pool2d(mask[None, None].float(), tuple(cells))[0, 0] > 0


def score_edit(sample: HeldOutSample, edited: torch.Tensor) -> dict[str, float]:
    """Hit, colour error and PSNR outside the object for one edited image (1, 3, H, W).

    Args:
        sample (HeldOutSample): the held-out render that was edited.
        edited (torch.Tensor): the edited image (1, 3, H, W) in [0, 1].
    """
    pixels = edited[0].permute(1, 2, 0)
    mean = mean_colour(pixels, sample.mask)
    src = sample.image[0].permute(1, 2, 0)
    return {
        "hit": float(nearest_colour(mean, sample.references) == sample.target_colour),
        "colour_error": (mean - sample.references[sample.target_colour]).norm().item(),
        "psnr_outside": psnr_outside(pixels, src, sample.mask),
    }


def _setting_name(tau: float) -> str:
    return "plain" if tau == 0 else f"relevance_tau{tau:g}"


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def edit_scores(
    editor,
    samples: list[HeldOutSample],
    tau: float,
    *,
    seed: int = 0,
    num_steps: int = 20,
    text_guidance: float = DEFAULTS.text_guidance,
    image_guidance: float = DEFAULTS.image_guidance,
) -> list[dict[str, float]]:
    """Edit every sample once and score it (:func:`score_edit`, plus the mask IoU when ``tau`` > 0).

    Args:
        editor (RelevanceEditor): the editor.
        samples (list[HeldOutSample]): held-out renders.
        tau (float): mask threshold (0: plain IP2P).
        seed (int, default 0): sample ``i`` is edited with the generator seeded ``seed * 1000 + i``, so two
            editors given the same arguments see the same noise (a paired comparison).
        num_steps (int, default 20): DDIM steps from pure noise.
        text_guidance (float, default 7.5): s_T.
        image_guidance (float, default 1.5): s_I.
    """
    rows = []
    for i, sample in enumerate(samples):
        result = editor.edit(
            sample.image, sample.instruction, mask_threshold=tau, text_guidance=text_guidance,
            image_guidance=image_guidance, num_steps=num_steps,
            generator=torch.Generator().manual_seed(seed * 1000 + i),
        )  # fmt: skip
        row = score_edit(sample, result.image)
        if tau > 0:
            row["mask_iou"] = iou(result.mask[0, 0], sample.mask)
        rows.append(row)
    return rows


def compare_editors(
    old_dir: str | Path,
    new_dir: str | Path,
    *,
    num_samples: int = 96,
    seed: int = 0,
    num_steps: int = 20,
    text_guidance: float = DEFAULTS.text_guidance,
    image_guidance: float = DEFAULTS.image_guidance,
    thresholds: tuple[float, ...] = (0.0, 0.5),
    specificity_samples: int = 24,
    t_rel: float = DEFAULTS.t_rel,
    iqr_ratios: tuple[float, ...] = SPECIFICITY_IQR_RATIOS,
    log: Callable[[str], None] = print,
) -> dict:
    """Two editors side by side in one run, on the same held-out samples with the same noise: means of
    each, and the paired difference (new - old) with its standard error, per setting and figure.

    Args:
        old_dir (str | Path): the reference editor (e.g. an earlier checkpoint).
        new_dir (str | Path): the candidate.
        num_samples (int, default 96): held-out scenes (set ``seed``) edited by both.
        seed (int, default 0): held-out set and noise seeds.
        num_steps (int, default 20): DDIM steps from pure noise.
        text_guidance (float, default 7.5): s_T.
        image_guidance (float, default 1.5): s_I.
        thresholds (tuple[float, ...], default (0.0, 0.5)): taus compared (0: plain IP2P).
        specificity_samples (int, default 24): scenes of :func:`relevance_specificity` (3-4 objects, every
            second confusable), scored for both editors with the same draws.
        t_rel (float, default 0.8): noise level of the relevance maps.
        iqr_ratios (tuple[float, ...], default SPECIFICITY_IQR_RATIOS): IQR ratios at which specificity is
            also reported, besides the paper's 1.5.
        log (Callable[[str], None], default print): where progress lines go.
    """
    from relevance_nerf2nerf.diffusion.editor import load_editor

    editors = {"old": load_editor(old_dir), "new": load_editor(new_dir)}
    samples = held_out_samples(num_samples, seed=seed)
    settings = dict(seed=seed, num_steps=num_steps, text_guidance=text_guidance,
                    image_guidance=image_guidance)  # fmt: skip
    results: dict = {"old": str(old_dir), "new": str(new_dir), "num_samples": num_samples, **settings}
    for tau in thresholds:
        rows = {name: edit_scores(editor, samples, tau, **settings) for name, editor in editors.items()}
        entry: dict = {name: _means(r) for name, r in rows.items()}
        entry["new_minus_old"] = {}
        for key in rows["old"][0]:
            diff = torch.tensor([n[key] - o[key] for o, n in zip(rows["old"], rows["new"], strict=True)])
            stderr = diff.std().item() / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
            entry["new_minus_old"][key] = {"mean": diff.mean().item(), "stderr": stderr}
        results[_setting_name(tau)] = entry
        log(f"{_setting_name(tau)}: {json.dumps(entry)}")
    specificity_set = held_out_samples(specificity_samples, seed=seed, num_objects=(3, 4), confusable_every=2)
    raw_maps = {  # the UNet passes once per editor; every ratio scores the same maps
        name: specificity_raw_maps(editor, specificity_set, seed=seed, t_rel=t_rel)
        for name, editor in editors.items()
    }
    results["relevance_specificity"] = {
        name: score_specificity(maps, specificity_set) for name, maps in raw_maps.items()
    }
    results["relevance_specificity_at_iqr_ratio"] = {
        name: specificity_at_iqr_ratios(maps, specificity_set, iqr_ratios) for name, maps in raw_maps.items()
    }
    log(f"relevance specificity: {json.dumps(results['relevance_specificity'])}; per IQR ratio: "
        f"{json.dumps(results['relevance_specificity_at_iqr_ratio'])}")  # fmt: skip
    return results


def evaluate_editor(
    model_dir: str | Path = TOY_EDITOR_DIR,
    *,
    num_samples: int = 24,
    seed: int = 0,
    num_steps: int = 20,
    text_guidance: float = DEFAULTS.text_guidance,
    image_guidance: float = DEFAULTS.image_guidance,
    thresholds: tuple[float, ...] = (0.0, 0.5),
    t_rel: float = DEFAULTS.t_rel,
    iqr_ratios: tuple[float, ...] = SPECIFICITY_IQR_RATIOS,
    log: Callable[[str], None] = print,
) -> dict:
    """Edit held-out renders with the editor at ``model_dir``; report hit rate and colour error per tau, then
    the relevance specificity (:func:`relevance_specificity`) at the paper's IQR ratio 1.5, its ceiling, and
    again at each of ``iqr_ratios`` (default: the scene pipeline's and the demo's), all at noise level
    ``t_rel``.

    Args:
        model_dir (str | Path, default TOY_EDITOR_DIR): the editor folder (diffusers format).
        num_samples (int, default 24): held-out renders per set.
        seed (int, default 0): which held-out set (and the noise seed).
        num_steps (int, default 20): DDIM steps per edit.
        text_guidance (float, default 7.5): s_T.
        image_guidance (float, default 1.5): s_I.
        thresholds (tuple[float, ...], default (0.0, 0.5)): the tau values to edit at (0: plain IP2P).
        t_rel (float, default 0.8): noise level of the relevance maps.
        iqr_ratios (tuple[float, ...], default SPECIFICITY_IQR_RATIOS): further IQR ratios to score
            specificity at.
        log (Callable[[str], None], default print): receives one line per result.
    """
    from relevance_nerf2nerf.diffusion.editor import load_editor

    editor = load_editor(model_dir)
    samples = held_out_samples(num_samples, seed=seed)
    copy_error = sum(score_edit(s, s.image)["colour_error"] for s in samples) / len(samples)
    results: dict = {"num_samples": len(samples), "num_steps": num_steps, "text_guidance": text_guidance,
                     "image_guidance": image_guidance, "copy_input_colour_error": copy_error}  # fmt: skip
    ious = []
    for tau in thresholds:
        scores = edit_scores(editor, samples, tau, seed=seed, num_steps=num_steps,
                             text_guidance=text_guidance, image_guidance=image_guidance)  # fmt: skip
        if tau > 0:
            ious += [s.pop("mask_iou") for s in scores]
        name = _setting_name(tau)
        results[name] = _means(scores)
        log(f"{name}: {json.dumps(results[name])}")
    if ious:
        results["relevance_mask_iou"] = sum(ious) / len(ious)
    mean_iou = results.get("relevance_mask_iou", 0.0)
    log(f"copy-the-input colour error {copy_error:.3f}; relevance mask IoU {mean_iou:.3f}")
    specificity_set = held_out_samples(num_samples, seed=seed, num_objects=(3, 4), confusable_every=2)
    raw_maps = specificity_raw_maps(editor, specificity_set, seed=seed, t_rel=t_rel)  # UNet once
    results["relevance_specificity"] = score_specificity(raw_maps, specificity_set)
    log(f"relevance specificity (3-4 objects, every 2nd scene confusable, 8 draws): "
        f"{json.dumps(results['relevance_specificity'])}")  # fmt: skip
    results["relevance_specificity_ceiling"] = score_specificity(
        raw_maps, specificity_set, non_targets_at_background=True
    )
    log(f"the same with non-target objects at the background's raw difference (ceiling): "
        f"{json.dumps(results['relevance_specificity_ceiling'])}")  # fmt: skip
    at_ratio = specificity_at_iqr_ratios(raw_maps, specificity_set, iqr_ratios)
    results["relevance_specificity_at_iqr_ratio"] = at_ratio
    log(f"relevance specificity per IQR ratio: {json.dumps(results['relevance_specificity_at_iqr_ratio'])}")
    met = {ratio: specificity_targets_met(figures) for ratio, figures in at_ratio.items()}
    results["specificity_targets_met_at_iqr_ratio"] = met
    log(f"specificity targets met per IQR ratio: {json.dumps(met)}")
    return results


def main() -> None:
    """Command line: parse the evaluation options with tyro, evaluate, print (and write) the figures."""
    import tyro

    def run(
        model_dir: Path = TOY_EDITOR_DIR,
        num_samples: int = 24,
        seed: int = 0,
        num_steps: int = 20,
        text_guidance: float = DEFAULTS.text_guidance,
        image_guidance: float = DEFAULTS.image_guidance,
        output: Path | None = None,
        compare_with: Path | None = None,
        t_rel: float = DEFAULTS.t_rel,
        iqr_ratios: tuple[float, ...] = SPECIFICITY_IQR_RATIOS,
    ) -> None:
        """Evaluate an editor directory on held-out synthetic scenes.

        Args:
            compare_with: another editor directory (e.g. an earlier checkpoint): edit the same samples with
                the same noise and settings by both and report the paired differences (``compare_editors``).
            t_rel: noise level of the relevance maps.
            iqr_ratios: IQR ratios at which relevance specificity is reported besides the paper's 1.5
                (default: the scene pipeline's SCENE_IQR_RATIO and the demo's TOY_EDITOR_IQR_RATIO).
            output: JSON file for the figures (replaced whole if it exists; its folder is created).
        """
        if output is not None:  # before the minutes of work: a folder, or a place nothing can be written
            check_output_file(output, "--output")
        settings = dict(num_samples=num_samples, seed=seed, num_steps=num_steps, text_guidance=text_guidance,
                        image_guidance=image_guidance, t_rel=t_rel, iqr_ratios=iqr_ratios)  # fmt: skip
        if compare_with is not None:
            metrics = compare_editors(compare_with, model_dir, **settings)
        else:
            metrics = evaluate_editor(model_dir, **settings)
        if output is not None:  # replaced whole (temporary file, then one rename), never half-written
            text = json.dumps(metrics, indent=2)
            write_all({"metrics": lambda path: path.write_text(text)}, {"metrics": output})

    report_uncaught_errors_as_one_line()  # bad input: one line, no traceback
    tyro.cli(run)


if __name__ == "__main__":
    main()
