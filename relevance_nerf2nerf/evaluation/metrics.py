"""Pixel-space edit metrics, in float arithmetic: PSNR / SSIM outside a mask, LPIPS when its weights are on
this machine, per-object colour change, nearest named colour and mask IoU.

Images are float tensors in [0, 1] laid out (..., H, W, 3) (what nerfstudio renders) unless stated otherwise;
masks are bool tensors (..., H, W) with the same leading shape. Nothing here imports nerfstudio or diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from relevance_nerf2nerf.diffusion.images import psnr
from relevance_nerf2nerf.errors import InvalidInputError

UNAVAILABLE = "unavailable"


def _check_pair(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    if a.shape != b.shape or a.shape[-1] != 3:
        raise InvalidInputError(
            f"images must have the same (..., H, W, 3) shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if mask is not None and mask.shape != a.shape[:-1]:
        raise InvalidInputError(f"mask shape {tuple(mask.shape)} does not match the images {tuple(a.shape)}")


def psnr_outside(after: torch.Tensor, before: torch.Tensor, region: torch.Tensor | None) -> float:
    """PSNR (dB) of ``after`` against ``before`` over the pixels OUTSIDE ``region`` (all pixels if None).

    Args:
        after: edited images (..., H, W, 3) in [0, 1].
        before: reference images of the same shape.
        region: bool (..., H, W), the edited region to exclude, or None.
    """
    _check_pair(after, before, region)
    if region is None:
        return psnr(after, before)
    keep = ~region
    if not keep.any():
        raise InvalidInputError("the mask covers every pixel: nothing is left outside it to compare")
    return psnr(after[keep], before[keep])


def ssim_outside(after: torch.Tensor, before: torch.Tensor, region: torch.Tensor | None) -> float:
    """Mean SSIM of ``after`` against ``before`` over the pixels outside ``region`` (torchmetrics' SSIM map,
    Gaussian window 11, sigma 1.5, data range 1, averaged over the kept pixels only).

    Args:
        after: edited images (V, H, W, 3) or (H, W, 3) in [0, 1].
        before: reference images of the same shape.
        region: bool (V, H, W) / (H, W), the edited region to exclude, or None.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(after, before, region)
    a = after.float().reshape(-1, *after.shape[-3:]).permute(0, 3, 1, 2)
    b = before.float().reshape(-1, *before.shape[-3:]).permute(0, 3, 1, 2)
    _, full = structural_similarity_index_measure(
        a, b, data_range=1.0, reduction="none", return_full_image=True
    )  # full: (V, 3, H, W) per-pixel SSIM, same size as the input (reflect-padded borders)
    per_pixel = full.mean(1)  # (V, H, W)
    if region is None:
        return per_pixel.mean().item()
    keep = ~region.reshape(per_pixel.shape)
    if not keep.any():
        raise InvalidInputError("the mask covers every pixel: nothing is left outside it to compare")
    return per_pixel[keep].mean().item()


def lpips_available() -> bool:
    """Whether torchmetrics' LPIPS (AlexNet) can be built without a download: its AlexNet backbone weights
    must already be in torch hub's checkpoint cache."""
    from pathlib import Path

    try:
        import torchmetrics  # noqa: F401
        from torchvision.models import AlexNet_Weights
    except ImportError:
        return False
    url = AlexNet_Weights.IMAGENET1K_V1.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def lpips_or_unavailable(after: torch.Tensor, before: torch.Tensor) -> float | str:
    """Mean LPIPS (AlexNet) of ``after`` against ``before`` (whole images), or ``"unavailable"`` when its
    weights are not on this machine (never a made-up number).

    Args:
        after: edited images (V, H, W, 3) in [0, 1].
        before: reference images of the same shape.
    """
    _check_pair(after, before)
    if not lpips_available():
        return UNAVAILABLE
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    a = after.float().reshape(-1, *after.shape[-3:]).permute(0, 3, 1, 2)
    b = before.float().reshape(-1, *before.shape[-3:]).permute(0, 3, 1, 2)
    with torch.no_grad():
        return float(metric(a.clamp(0, 1), b.clamp(0, 1)))


def mean_colour(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean RGB (3,) of ``images`` (..., H, W, 3) over ``mask`` (..., H, W)."""
    _check_pair(images, images, mask)
    if not mask.any():
        raise InvalidInputError("the object's mask is empty: it is not visible in any rendered view")
    return images[mask].float().mean(0)


def colour_change(after: torch.Tensor, before: torch.Tensor, mask: torch.Tensor) -> float:
    """RGB distance between the mean colours of ``after`` and ``before`` over ``mask`` (0 = unchanged).

    Args:
        after: edited images (..., H, W, 3) in [0, 1].
        before: reference images of the same shape.
        mask: bool (..., H, W), the object's pixels.
    """
    return (mean_colour(after, mask) - mean_colour(before, mask)).norm().item()


def object_colour_changes(
    after: torch.Tensor, before: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """:func:`colour_change` of every object (name -> mask) that is visible in at least one view.

    Args:
        after: edited images (..., H, W, 3) in [0, 1].
        before: reference images of the same shape.
        masks: object name -> bool (..., H, W) mask.
    """
    return {name: colour_change(after, before, mask) for name, mask in masks.items() if mask.any()}


def nearest_colour(colour: torch.Tensor, references: Mapping[str, torch.Tensor]) -> str:
    """Name of the reference colour (name -> (3,) RGB) nearest to ``colour`` (3,) in RGB distance."""
    return min(references, key=lambda name: (references[name] - colour).norm().item())


def iou(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Intersection over union of two bool masks of the same shape, pooled over every pixel (1.0 when both
    are empty).

    Args:
        predicted: bool mask, e.g. relevance >= tau.
        truth: bool mask of the same shape, e.g. the target object's ground truth.
    """
    if predicted.shape != truth.shape:
        raise InvalidInputError(f"mask shapes differ: {tuple(predicted.shape)} vs {tuple(truth.shape)}")
    union = (predicted | truth).sum()
    if union == 0:
        return 1.0
    return ((predicted & truth).sum() / union).item()
