"""The one region ``relevance-eval scene`` excludes from "PSNR / SSIM outside the edit", the same for every
run it compares.

A figure "outside the edit" compares methods only if the excluded pixels are the same for each of them. A
run's own rendered mask is not: at tau 0 (Instruct-NeRF2NeRF) it is the whole image, and at any tau it moves
with what the run learnt. So the region is, in order of preference:

1. the ground-truth mask of the target (a generated scene's ``masks/<object>/``), when given;
2. otherwise the BASE's relevance for the instruction: the editor's 2D relevance maps (paper eq. 2-3) of the
   unedited base's renders at the same cameras, thresholded at ``REGION_TAU`` = 0.5 (the paper's tau for
   scenes) whatever tau the measured run used. It depends on the base, the instruction and the editor
   settings (model, t_rel, IQR ratio), never on the edited run's renders or its tau; runs edited from one
   base with one editor and instruction therefore share it. (A union over the compared runs' masks was the
   alternative; it would change a run's figure whenever another run joins the comparison.)
3. nothing (the whole image) when the run has no instruction to compute relevance for.

The paper's Edit PSNR (whole image, no exclusion) is reported beside it.
"""

from __future__ import annotations

import torch

from relevance_nerf2nerf.diffusion.settings import DEFAULTS

REGION_TAU = 0.5
"""Threshold of the base's relevance maps (the paper's tau for scene edits)."""
REGION_SEED = 0
"""Seed of the relevance maps' diffusion noise (view v draws from seed REGION_SEED + v)."""


def base_relevance_maps(
    editor, images: torch.Tensor, instruction: str, *, t_rel: float = DEFAULTS.t_rel, iqr_ratio: float = 1.5
) -> torch.Tensor:
    """The editor's relevance map (eq. 2-3, pixel resolution) of every image for ``instruction``.

    Args:
        editor (RelevanceEditor): the editor the runs were edited with (``diffusion.editor.load_editor``).
        images (torch.Tensor): the base's renders (V, H, W, 3) in [0, 1].
        instruction (str): the editing instruction.
        t_rel (float, default 0.8): noise level of the relevance maps.
        iqr_ratio (float, default 1.5): outlier fence of the maps.

    Returns:
        (V, H, W) relevance in [0, 1].
    """
    maps = []
    for v, image in enumerate(images):
        generator = torch.Generator().manual_seed(REGION_SEED + v)
        result = editor.relevance(
            image.permute(2, 0, 1)[None], instruction, t_rel=t_rel, iqr_ratio=iqr_ratio, generator=generator
        )
        maps.append(result.pixel[0, 0].to(images.device))
    return torch.stack(maps)


def comparison_region(
    ground_truth: torch.Tensor | None, base_relevance: torch.Tensor | None, tau: float = REGION_TAU
) -> tuple[torch.Tensor | None, str]:
    """The region to exclude from the "outside" figures, and its description (see the module docstring).

    Args:
        ground_truth (torch.Tensor | None): bool (V, H, W) ground-truth mask of the target, if any.
        base_relevance (torch.Tensor | None): (V, H, W) relevance of the base's renders
            (:func:`base_relevance_maps`), if any.
        tau (float, default REGION_TAU): threshold of ``base_relevance``.
    """
    if ground_truth is not None:
        return ground_truth, "ground-truth mask of the target"
    if base_relevance is not None:
        return base_relevance >= tau, f"base's relevance for the instruction >= {tau:g}"
    return None, "none (whole image)"


def region_of_run(config, before: torch.Tensor, ground_truth: torch.Tensor | None, device: str = "cpu"):
    """:func:`comparison_region` for an edited run's pipeline config: its editor, instruction, t_rel and IQR
    ratio give the base relevance when there is no ground truth (the editor loads only then).

    Args:
        config (PipelineConfig): the edited run's pipeline config (``config.yml``'s ``pipeline``).
        before (torch.Tensor): the base's renders (V, H, W, 3) in [0, 1].
        ground_truth (torch.Tensor | None): bool (V, H, W) ground-truth mask of the target, if any.
        device (str, default "cpu"): device of the editor.
    """
    instruction = str(getattr(config, "instruction", "") or "")
    if ground_truth is not None or not instruction.strip() or not hasattr(config, "editor_model"):
        return comparison_region(ground_truth, None)
    from relevance_nerf2nerf.diffusion.editor import load_editor

    editor = load_editor(str(config.editor_model), device=device)
    maps = base_relevance_maps(
        editor,
        before,
        instruction,
        t_rel=float(getattr(config, "t_rel", 0.8)),
        iqr_ratio=_iqr_ratio_of(config),
    )
    return comparison_region(None, maps)


def _iqr_ratio_of(config) -> float:
    """The IQR ratio the run's maps used: --pipeline.relevance-iqr-ratio, else the editor's recommendation,
    else the scene pipeline's default (None in ``config.yml`` means "not set")."""
    from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO
    from relevance_nerf2nerf.diffusion.settings import editor_relevance_settings

    ratio = getattr(config, "relevance_iqr_ratio", None)
    if ratio is not None:
        return float(ratio)
    return float(editor_relevance_settings(str(config.editor_model)).get("iqr_ratio", SCENE_IQR_RATIO))
