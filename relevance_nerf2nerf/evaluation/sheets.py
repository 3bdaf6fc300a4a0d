"""Contact sheets and GIFs of rendered views: one labelled row per image set (input, before, after, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from relevance_nerf2nerf.diffusion.images import colorize
from relevance_nerf2nerf.scenes.dataset import to_uint8

LABEL_WIDTH = 120  # pixels of the label column on the left of a contact sheet


def heatmaps(relevance: torch.Tensor) -> np.ndarray:
    """(V, H, W) relevance in [0, 1] -> (V, H, W, 3) uint8 colour-mapped (bright = relevant)."""
    return np.stack([colorize(r) for r in relevance])


def rgb_rows(images: dict[str, torch.Tensor | np.ndarray]) -> dict[str, np.ndarray]:
    """Name -> (V, H, W, 3) uint8 for float images in [0, 1] (tensors) or uint8 arrays (kept)."""
    return {name: a if isinstance(a, np.ndarray) else to_uint8(a) for name, a in images.items()}


def contact_sheet(rows: dict[str, np.ndarray], num_columns: int = 6, scale: int = 3) -> np.ndarray:
    """A grid: one row per entry (label on the left), ``num_columns`` views evenly picked from each.

    Args:
        rows: label -> (V, H, W, 3) uint8, the same V, H, W for every row.
        num_columns: views per row (all of them if fewer).
        scale: nearest-neighbour upscaling of every view.
    """
    from PIL import Image, ImageDraw

    first = next(iter(rows.values()))
    picks = np.linspace(0, len(first) - 1, min(num_columns, len(first))).round().astype(int)
    grid = np.concatenate([np.concatenate(list(row[picks]), axis=1) for row in rows.values()], axis=0)
    grid = np.asarray(
        Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    )
    labels = Image.new("RGB", (LABEL_WIDTH, grid.shape[0]), "white")
    draw = ImageDraw.Draw(labels)
    row_height = grid.shape[0] // len(rows)
    for i, label in enumerate(rows):
        draw.text((4, i * row_height + row_height // 2 - 6), label, fill="black")
    return np.concatenate([np.asarray(labels), grid], axis=1)


def save_gif(frames: np.ndarray, path: Path, scale: int = 3, duration_ms: int = 120) -> Path:
    """Write (V, H, W, 3) uint8 frames as a looping GIF, upscaled ``scale`` times (nearest)."""
    from PIL import Image

    images = [
        Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
