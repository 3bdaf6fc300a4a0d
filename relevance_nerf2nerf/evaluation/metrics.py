"""Pixel-space edit metrics, in float arithmetic: PSNR / SSIM outside a mask (torchmetrics), LPIPS when its
weights are in torch hub's cache, per-object colour change, nearest named colour, mask IoU, and per-view
values with their spread beside the pooled ones.

Images are float tensors in [0, 1] laid out (..., H, W, 3) (what nerfstudio renders) unless stated otherwise;
masks are bool tensors (..., H, W) with the same leading shape. Nothing here imports nerfstudio or diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from relevance_nerf2nerf.errors import InvalidInputError

UNAVAILABLE = "unavailable"
MAX_PSNR = 100.0
"""PSNR reported for identical inputs (a finite number JSON can hold)."""
SSIM_KERNEL = 11
"""Side of torchmetrics' Gaussian SSIM window (sigma 1.5: int(3.5 * 1.5 + 0.5) * 2 + 1)."""


def _check_pair(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    if a.shape != b.shape or a.shape[-1] != 3:
        raise InvalidInputError(
            f"images must have the same (..., H, W, 3) shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if mask is not None and mask.shape != a.shape[:-1]:
        raise InvalidInputError(f"mask shape {tuple(mask.shape)} does not match the images {tuple(a.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """torchmetrics' PSNR (dB, data range 1) of two images or pixel sets in [0, 1], pooled over every value;
    identical inputs give ``MAX_PSNR``.

    Args:
        a (torch.Tensor): images or pixels in [0, 1].
        b (torch.Tensor): the same shape.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    value = float(peak_signal_noise_ratio(a.float(), b.float(), data_range=1.0))
    return min(value, MAX_PSNR)


def psnr_outside(after: torch.Tensor, before: torch.Tensor, region: torch.Tensor | None) -> float:
    """PSNR (dB) of ``after`` against ``before`` over the pixels OUTSIDE ``region`` (all pixels if None).

    Args:
        after (torch.Tensor): edited images (..., H, W, 3) in [0, 1].
        before (torch.Tensor): reference images of the same shape.
        region (torch.Tensor | None): bool (..., H, W), the edited region to exclude, or None.
    """
    _check_pair(after, before, region)
    if region is None:
        return psnr(after, before)
    keep = ~region
    if not keep.any():
        raise InvalidInputError("the mask covers every pixel: nothing is left outside it to compare")
    return psnr(after[keep], before[keep])


def window_clear_of(region: torch.Tensor, kernel: int = SSIM_KERNEL) -> torch.Tensor:
    """Pixels whose ``kernel`` x ``kernel`` window (centred on them) holds no pixel of ``region``.

    Args:
        region (torch.Tensor): bool (V, H, W) or (H, W), the excluded pixels.
        kernel (int, default SSIM_KERNEL): window side (odd).
    """
    flat = region.reshape(-1, 1, *region.shape[-2:]).float()
    touched = torch.nn.functional.max_pool2d(flat, kernel, stride=1, padding=kernel // 2)
    return (touched[:, 0] == 0).reshape(region.shape)


def _ssim_map(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """torchmetrics' per-pixel SSIM map (V, H, W), channel mean (Gaussian window 11, sigma 1.5, range 1), in
    float64: in flat areas float32 rounding of the variances alone moves identical windows off 1 by ~1e-5."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = after.double().reshape(-1, *after.shape[-3:]).permute(0, 3, 1, 2)
    b = before.double().reshape(-1, *before.shape[-3:]).permute(0, 3, 1, 2)
    _, full = structural_similarity_index_measure(
        a, b, data_range=1.0, reduction="none", return_full_image=True
    )  # (V, 3, H, W): window centred on each pixel (reflect-padded borders reflect pixels inside the window)
    return full.mean(1)


def ssim_outside(after: torch.Tensor, before: torch.Tensor, region: torch.Tensor | None) -> float:
    """Mean SSIM of ``after`` against ``before`` over the pixels whose SSIM window does not touch ``region``
    (torchmetrics' SSIM map, Gaussian window 11, sigma 1.5, data range 1): a change inside the region cannot
    lower it. All pixels if ``region`` is None.

    Args:
        after (torch.Tensor): edited images (V, H, W, 3) or (H, W, 3) in [0, 1].
        before (torch.Tensor): reference images of the same shape.
        region (torch.Tensor | None): bool (V, H, W) / (H, W), the edited region to exclude, or None.
    """
    _check_pair(after, before, region)
    per_pixel = _ssim_map(after, before)
    if region is None:
        return per_pixel.mean().item()
    keep = window_clear_of(region).reshape(per_pixel.shape)
    if not keep.any():
        raise InvalidInputError(
            "every pixel lies within 5 pixels of the excluded region: no SSIM window is clear of it"
        )
    return per_pixel[keep].mean().item()


def per_view(
    figure, after: torch.Tensor, before: torch.Tensor, region: torch.Tensor | None = None
) -> list[float | None]:
    """``figure(after[v], before[v], region[v])`` for every view v (None where it raises InvalidInputError,
    e.g. an object not visible in that view).

    Args:
        figure (callable): a metric taking (after, before, region) of one view, e.g. :func:`psnr_outside`.
        after (torch.Tensor): edited images (V, H, W, 3).
        before (torch.Tensor): reference images of the same shape.
        region (torch.Tensor | None, default None): bool (V, H, W) passed view by view.
    """
    values: list[float | None] = []
    for v in range(after.shape[0]):
        try:
            values.append(figure(after[v], before[v], None if region is None else region[v]))
        except InvalidInputError:
            values.append(None)
    return values


def spread(values: list[float | None]) -> dict:
    """Mean, sample standard deviation, min, max and count of the given per-view values (Nones skipped),
    with the values themselves.

    Args:
        values (list[float | None]): one figure per view.
    """
    import statistics

    kept = [float(v) for v in values if v is not None]
    return {
        "mean": statistics.mean(kept) if kept else None,
        "std": statistics.stdev(kept) if len(kept) > 1 else 0.0 if kept else None,
        "min": min(kept, default=None),
        "max": max(kept, default=None),
        "views": len(kept),
        "per_view": values,
    }


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
    weights are not in torch hub's cache (never a made-up number).

    Args:
        after (torch.Tensor): edited images (V, H, W, 3) in [0, 1].
        before (torch.Tensor): reference images of the same shape.
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
    """Mean RGB (3,) of ``images`` (..., H, W, 3) over ``mask`` (..., H, W).

    Args:
        images (torch.Tensor): (..., H, W, 3) in [0, 1].
        mask (torch.Tensor): (..., H, W) bool, the pixels to average.
    """
    _check_pair(images, images, mask)
    if not mask.any():
        raise InvalidInputError("the object's mask is empty: it is not visible in any rendered view")
    return images[mask].float().mean(0)


def colour_change(after: torch.Tensor, before: torch.Tensor, mask: torch.Tensor) -> float:
    """RGB distance between the mean colours of ``after`` and ``before`` over ``mask`` (0 = unchanged).

    Args:
        after (torch.Tensor): edited images (..., H, W, 3) in [0, 1].
        before (torch.Tensor): reference images of the same shape.
        mask (torch.Tensor): bool (..., H, W), the object's pixels.
    """
    return (mean_colour(after, mask) - mean_colour(before, mask)).norm().item()


def object_colour_changes(
    after: torch.Tensor, before: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """:func:`colour_change` of every object (name -> mask) that is visible in at least one view.

    Args:
        after (torch.Tensor): edited images (..., H, W, 3) in [0, 1].
        before (torch.Tensor): reference images of the same shape.
        masks (Mapping[str, torch.Tensor]): object name -> bool (..., H, W) mask.
    """
    return {name: colour_change(after, before, mask) for name, mask in masks.items() if mask.any()}


def nearest_colour(colour: torch.Tensor, references: Mapping[str, torch.Tensor]) -> str:
    """Name of the reference colour (name -> (3,) RGB) nearest to ``colour`` (3,) in RGB distance.

    Args:
        colour (torch.Tensor): (3,) RGB in [0, 1].
        references (Mapping[str, torch.Tensor]): colour name -> (3,) RGB.
    """
    return min(references, key=lambda name: (references[name] - colour).norm().item())


def iou(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Intersection over union of two bool masks of the same shape, pooled over every pixel (1.0 when both
    are empty).

    Args:
        predicted (torch.Tensor): bool mask, e.g. relevance >= tau.
        truth (torch.Tensor): bool mask of the same shape, e.g. the target object's ground truth.
    """
    if predicted.shape != truth.shape:
        raise InvalidInputError(f"mask shapes differ: {tuple(predicted.shape)} vs {tuple(truth.shape)}")
    union = (predicted | truth).sum()
    if union == 0:
        return 1.0
    return ((predicted & truth).sum() / union).item()
