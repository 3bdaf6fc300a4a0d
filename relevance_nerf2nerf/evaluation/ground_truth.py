"""Edit metrics against the ground truth a generated scene carries (``relevance_nerf2nerf.scenes``).

A scene folder written by the generator holds ``masks/<object>/<frame>.png`` (255 = the object is seen in
that pixel) and ``scene.json`` (the scene description). From them: the target object's colour change, its
nearest named colour and its colour error to the requested colour (both against the object rendered in
every named colour), the colour change of every NON-target object (over its pixels where the target is not
seen), the PSNR / SSIM outside the target, the paper's whole-image Edit PSNR and the IoU of a relevance mask
with the target. Figures pool every given view; ``per_view`` gives each view's value and their spread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.evaluation.metrics import (
    colour_change,
    iou,
    mean_colour,
    nearest_colour,
    object_colour_changes,
    per_view,
    psnr,
    psnr_outside,
    spread,
    ssim_outside,
)
from relevance_nerf2nerf.scenes import COLOURS, SHAPES, cast, load_scene


def target_of(
    instruction: str, scene_objects: list[str], hint: str = "or change --scene-seed"
) -> tuple[str, str | None]:
    """The object an instruction names (must be in the scene) and the colour it asks for (if any).

    Args:
        instruction (str): e.g. "make the cube blue".
        scene_objects (list[str]): names of the scene's objects (their shapes).
        hint (str, default 'or change --scene-seed'): the end of the error message (what else the user can
            do).
    """
    words = re.findall(r"[a-z]+", instruction.lower())
    shapes = [w for w in words if w in SHAPES]
    if not shapes or shapes[0] not in scene_objects:
        named = f"names no object of the scene (no {shapes[0]} in it)" if shapes else "names no object"
        choices = ", ".join(scene_objects)
        raise InvalidInputError(f"instruction {instruction!r} {named}: name one of {choices} {hint}")
    colours = [w for w in words if w in COLOURS]
    return shapes[0], colours[-1] if colours else None


@dataclass
class GroundTruth:
    """Per-object masks of some views of a generated scene, in the order the views were asked for."""

    names: list[str]
    """Frame file names (``frame_00000.png``...), one per view."""
    masks: dict[str, torch.Tensor]
    """Object name -> (V, H, W) bool."""
    images: torch.Tensor | None
    """(V, H, W, 3) ground-truth renders (None without ``scene.json``)."""
    references: dict[str, dict[str, torch.Tensor]] | None
    """Object -> colour -> (3,) mean RGB of the object painted in that colour (None without scene.json)."""


def load_ground_truth(scene_dir: str | Path, names: list[str]) -> GroundTruth:
    """Masks (and, for a generated scene, renders and colour references) of the views called ``names``.

    Args:
        scene_dir (str | Path): a folder with ``masks/<object>/<name>`` PNGs (and ``scene.json`` from the
            generator).
        names (list[str]): frame file names of the views to load, e.g. ``["frame_00000.png", ...]``.
    """
    from PIL import Image

    scene_dir = Path(scene_dir)
    objects = sorted(p.name for p in (scene_dir / "masks").glob("*") if p.is_dir())
    if not objects:
        raise InvalidInputError(
            f"{scene_dir} has no masks/<object>/ folders: pass a scene written by relevance-scene"
        )
    masks = {}
    for obj in objects:
        paths = [scene_dir / "masks" / obj / name for name in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InvalidInputError(
                f"ground-truth mask {missing[0]} is missing: is {scene_dir} the scene "
                "these runs were trained on?"
            )
        masks[obj] = torch.from_numpy(np.stack([np.asarray(Image.open(p)) > 127 for p in paths]))
    if not (scene_dir / "scene.json").is_file():
        return GroundTruth(names, masks, None, None)

    info = load_scene(scene_dir)
    order = {path.name: i for i, path in enumerate(info.image_paths)}
    index = torch.tensor([order[name] for name in names])
    supersample = json.loads((scene_dir / "scene.json").read_text()).get("supersample", 2)
    gbuffer = cast(info.spec, info.cameras, supersample)
    base = {o.name: o.colour for o in info.spec.objects}
    images = gbuffer.compose(base)[index]
    references = {}
    for obj in info.object_names:
        if masks[obj].any():
            references[obj] = {
                colour: mean_colour(gbuffer.compose({**base, obj: colour})[index], masks[obj])
                for colour in COLOURS
            }
    return GroundTruth(names, masks, images, references)


def ground_truth_metrics(
    after: torch.Tensor,
    before: torch.Tensor,
    truth: GroundTruth,
    target: str,
    target_colour: str | None = None,
    relevance: torch.Tensor | None = None,
    tau: float = 0.5,
) -> dict:
    """Metrics of an edit of ``target`` from the ground truth (all given views pooled; ``per_view``: each
    view's PSNR / SSIM outside the target, target colour change and largest non-target colour change, with
    their mean and spread).

    Args:
        after (torch.Tensor): edited views (V, H, W, 3) in [0, 1].
        before (torch.Tensor): the same views unedited.
        truth (GroundTruth): the views' ground truth (:func:`load_ground_truth`).
        target (str): name of the object the instruction is about.
        target_colour (str | None, default None): the colour it asks for, if any (colour error and hit are
            then reported).
        relevance (torch.Tensor | None, default None): (V, H, W) relevance in [0, 1] of the edited run, if any
            (IoU of ``>= tau`` with target).
        tau (float, default 0.5): the mask threshold.
    """
    if target not in truth.masks:
        raise InvalidInputError(f"no ground-truth mask for {target!r}: objects are {', '.join(truth.masks)}")
    mask = truth.masks[target]
    if mask.shape != after.shape[:-1]:
        raise InvalidInputError(
            f"ground-truth masks are {tuple(mask.shape[1:])} but the renders {tuple(after.shape[1:3])}: "
            "render at the resolution of the scene"
        )
    mean_before, mean_after = mean_colour(before, mask), mean_colour(after, mask)
    # a boundary pixel can see two objects: non-targets are measured where the target is not seen
    others = {name: m & ~mask for name, m in truth.masks.items() if name != target}
    non_target = object_colour_changes(after, before, others)
    metrics: dict = {
        "object": target,
        "target_colour": target_colour,
        "object_pixel_fraction": mask.float().mean().item(),
        "psnr_outside_object_after_vs_before": psnr_outside(after, before, mask),
        "ssim_outside_object_after_vs_before": ssim_outside(after, before, mask),
        "psnr_inside_object_after_vs_before": psnr(after[mask], before[mask]),
        "psnr_whole_image_after_vs_before": psnr(after, before),
        "object_mean_rgb_before": mean_before.tolist(),
        "object_mean_rgb_after": mean_after.tolist(),
        "object_colour_change": colour_change(after, before, mask),
        "non_target_colour_change": non_target,
        "max_non_target_colour_change": max(non_target.values(), default=0.0),
    }
    if truth.images is not None:
        metrics["base_psnr_vs_ground_truth"] = psnr(before, truth.images)
    if truth.references is not None:
        references = truth.references[target]
        metrics["object_nearest_colour_after"] = nearest_colour(mean_after, references)
        if target_colour is not None:
            metrics["object_colour_error_before"] = (mean_before - references[target_colour]).norm().item()
            metrics["object_colour_error_after"] = (mean_after - references[target_colour]).norm().item()
            metrics["edit_hit"] = metrics["object_nearest_colour_after"] == target_colour
    if relevance is not None:
        metrics["relevance_iou_with_object"] = iou(relevance >= tau, mask)
    metrics["per_view"] = per_view_metrics(after, before, truth, target)
    return metrics


def _largest_non_target_change(after: torch.Tensor, before: torch.Tensor, others: torch.Tensor) -> float:
    """Largest colour change over the non-target objects of one view (``others``: (K, H, W) masks)."""
    changes = object_colour_changes(after, before, dict(enumerate(others)))
    if not changes:
        raise InvalidInputError("no non-target object is visible in this view")
    return max(changes.values())


def per_view_metrics(after: torch.Tensor, before: torch.Tensor, truth: GroundTruth, target: str) -> dict:
    """Per-view figures of an edit of ``target`` with their spread (``metrics.spread``): PSNR and SSIM outside
    the target, the target's colour change and the largest non-target colour change; a view where the figure
    is undefined (object not visible) counts as None.

    Args:
        after (torch.Tensor): edited views (V, H, W, 3) in [0, 1].
        before (torch.Tensor): the same views unedited.
        truth (GroundTruth): the views' ground truth.
        target (str): the object the instruction is about.
    """
    mask = truth.masks[target]
    figures = {
        "psnr_outside_object": spread(per_view(psnr_outside, after, before, mask)),
        "ssim_outside_object": spread(per_view(ssim_outside, after, before, mask)),
        "object_colour_change": spread(per_view(colour_change, after, before, mask)),
    }
    others = [m & ~mask for name, m in truth.masks.items() if name != target]
    if others:
        changes = per_view(_largest_non_target_change, after, before, torch.stack(others, dim=1))
        figures["max_non_target_colour_change"] = spread(changes)
    return figures
