"""Crop-to-relevance geometry: where the diffusion of a relevance-guided edit has to run.

Outside the edit mask a relevance-guided edit pastes the input back bit for bit (paper eq. 5 and the final
composite), so the diffusion only has to produce the pixels inside the mask. A crop is the bounding box of
the mask, widened by a context margin (IP2P sees some surroundings), never smaller than a minimum size,
rounded outward to the latent grid and kept inside the image. Boxes live on the image padded to the grid
(``images.pad_to_multiple``), so every box side is a multiple of the grid factor and its latents are
exactly a window of the full frame's latent grid. An empty mask has no box (nothing to edit: skip the
diffusion); a box covering most of the frame becomes the full frame (cropping would save little).

Several images edited in one batched UNet call need one crop size: :func:`crop_boxes` grows every box to
the largest one, around its own centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from relevance_nerf2nerf.errors import InvalidInputError


def check_crop_settings(margin: float, min_size: float, full_frame_above: float) -> None:
    """Raise :class:`InvalidInputError` for unusable crop settings (callable before any model is loaded).

    Args:
        margin (float): context margin on each side of the mask's bounding box, a fraction of the longer image
            side.
        min_size (float): smallest crop side, a fraction of the image side along that axis.
        full_frame_above (float): crops covering at least this fraction of the frame run on the full frame.
    """
    for name, value, high in (("margin", margin, 1.0), ("min size", min_size, 1.0)):
        if not (math.isfinite(value) and 0.0 <= value <= high):
            raise InvalidInputError(f"crop {name} must be a fraction of an image side in [0, 1], got {value}")
    if not (math.isfinite(full_frame_above) and 0.0 < full_frame_above <= 1.0):
        raise InvalidInputError(
            f"crop full-frame threshold must be an area fraction in (0, 1], got {full_frame_above}"
        )


@dataclass(frozen=True)
class CropSettings:
    """How a crop is grown around the edit mask (validated on construction)."""

    margin: float = 0.03125
    """Context margin on each side of the mask's bounding box, as a fraction of the longer image side."""
    min_size: float = 0.25
    """Smallest crop side, as a fraction of the image side along that axis (IP2P keeps some context)."""
    full_frame_above: float = 0.75
    """A crop covering at least this fraction of the (padded) frame runs on the full frame instead."""

    def __post_init__(self) -> None:
        check_crop_settings(self.margin, self.min_size, self.full_frame_above)


@dataclass(frozen=True)
class CropBox:
    """A window ``[top, top + height) x [left, left + width)`` of the image padded to the latent grid."""

    top: int
    left: int
    height: int
    width: int

    def pixels(self) -> tuple[slice, slice]:
        """Row and column slices of the window at pixel resolution."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def latents(self, factor: int) -> tuple[slice, slice]:
        """Row and column slices of the window on the latent grid of factor ``factor``.

        Args:
            factor (int): the latent grid factor (pixels per latent cell).
        """
        return (
            slice(self.top // factor, (self.top + self.height) // factor),
            slice(self.left // factor, (self.left + self.width) // factor),
        )


def _place(low: int, high: int, size: int, length: int, grid: int) -> tuple[int, int]:
    """Grow the grid-aligned span [low, high) symmetrically (in grid steps) to ``size`` (a multiple of grid,
    <= length), then shift it inside [0, length); a span already that large is kept."""
    extra = max(size - (high - low), 0)
    low -= (extra // grid // 2) * grid
    high = low + max(size, high - low)
    shift = max(-low, 0) - max(high - length, 0)
    return low + shift, high + shift


def _span(
    mask_any: torch.Tensor, length: int, padded: int, grid: int, margin: int, min_size: float
) -> tuple[int, int]:
    """One axis of a box: the occupied range of ``mask_any`` (a 1D bool profile), widened and aligned."""
    occupied = torch.nonzero(mask_any).flatten()
    first, last = int(occupied[0]), int(occupied[-1]) + 1
    low = max((first - margin) // grid * grid, 0)
    high = min(-(-(last + margin) // grid) * grid, padded)
    smallest = min(-(-math.ceil(min_size * length) // grid) * grid, padded)
    return _place(low, high, smallest, padded, grid)


def crop_boxes(masks: torch.Tensor, grid: int, settings: CropSettings) -> list[CropBox | None]:
    """Crop windows of a batch of edit masks, all of one size (for one batched UNet call).

    Args:
        masks (torch.Tensor): (B, 1, H, W) or (B, H, W) bool edit masks at pixel resolution (relevance >=
            tau).
        grid (int): the backend's latent grid factor (``vae_scale_factor``): box corners and sides are
            multiples.
        settings (CropSettings): margin, minimum size and full-frame threshold.

    Returns one entry per image: None where the mask is empty (nothing to edit), otherwise a window of the
    image padded to ``grid``. Every window contains its mask's bounding box plus the margin (as far as the
    image allows); all windows share the size of the largest one, and when that covers at least
    ``settings.full_frame_above`` of the padded frame every window is the full padded frame.
    """
    if masks.dim() == 4:
        masks = masks[:, 0]
    height, width = masks.shape[-2:]
    padded_h, padded_w = -(-height // grid) * grid, -(-width // grid) * grid
    margin = math.ceil(settings.margin * max(height, width))
    spans: list[tuple[tuple[int, int], tuple[int, int]] | None] = []
    for mask in masks.bool():
        if not bool(mask.any()):
            spans.append(None)
            continue
        rows = _span(mask.any(dim=1), height, padded_h, grid, margin, settings.min_size)
        cols = _span(mask.any(dim=0), width, padded_w, grid, margin, settings.min_size)
        spans.append((rows, cols))
    present = [s for s in spans if s is not None]
    if not present:
        return [None] * len(spans)
    size_h = max(r[1] - r[0] for r, _ in present)
    size_w = max(c[1] - c[0] for _, c in present)
    if size_h * size_w >= settings.full_frame_above * padded_h * padded_w:
        size_h, size_w = padded_h, padded_w
    boxes: list[CropBox | None] = []
    for span in spans:
        if span is None:
            boxes.append(None)
            continue
        top, _ = _place(*span[0], size_h, padded_h, grid)
        left, _ = _place(*span[1], size_w, padded_w, grid)
        boxes.append(CropBox(top, left, size_h, size_w))
    return boxes
