"""Contact sheets and GIFs of rendered views: one labelled row per image set (input, before, after, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from relevance_nerf2nerf.diffusion.images import colorize, to_uint8

LABEL_WIDTH = 120  # pixels of the label column on the left of a contact sheet


def heatmaps(relevance: torch.Tensor) -> np.ndarray:
    """(V, H, W) relevance in [0, 1] -> (V, H, W, 3) uint8 colour-mapped (bright = relevant).

    Args:
        relevance (torch.Tensor): (V, H, W) maps in [0, 1].
    """
    return np.stack([colorize(r) for r in relevance])


def rgb_rows(images: dict[str, torch.Tensor | np.ndarray]) -> dict[str, np.ndarray]:
    """Name -> (V, H, W, 3) uint8 for float images in [0, 1] (tensors) or uint8 arrays (kept).

    Args:
        images (dict[str, torch.Tensor | np.ndarray]): row name -> (V, H, W, 3) float tensor in [0, 1] or
            uint8 array.
    """
    return {name: a if isinstance(a, np.ndarray) else to_uint8(a).cpu().numpy() for name, a in images.items()}


def contact_sheet(rows: dict[str, np.ndarray], num_columns: int = 6, scale: int = 3) -> np.ndarray:
    """A grid: one row per entry (label on the left), ``num_columns`` views evenly picked from each.

    Args:
        rows (dict[str, np.ndarray]): label -> (V, H, W, 3) uint8, the same V, H, W for every row.
        num_columns (int, default 6): views per row (all of them if fewer).
        scale (int, default 3): nearest-neighbour upscaling of every view.
    """
    from PIL import Image, ImageDraw

    first = next(iter(rows.values()))
    picks = np.linspace(0, len(first) - 1, min(num_columns, len(first))).round().astype(int)
    grid = np.concatenate([np.concatenate(list(row[picks]), axis=1) for row in rows.values()], axis=0)
    grid = upscale(grid, scale)
    labels = Image.new("RGB", (LABEL_WIDTH, grid.shape[0]), "white")
    draw = ImageDraw.Draw(labels)
    row_height = grid.shape[0] // len(rows)
    for i, label in enumerate(rows):
        draw.text((4, i * row_height + row_height // 2 - 6), label, fill="black")
    return np.concatenate([np.asarray(labels), grid], axis=1)


def save_gif(frames: np.ndarray, path: Path, scale: int = 3, duration_ms: int = 120) -> Path:
    """Write (V, H, W, 3) uint8 frames as a looping GIF, upscaled ``scale`` times (nearest).

    Args:
        frames (np.ndarray): (V, H, W, 3) uint8.
        path (Path): the GIF file to write.
        scale (int, default 3): nearest-neighbour upscaling factor.
        duration_ms (int, default 120): display time of each frame.
    """
    from PIL import Image

    images = [Image.fromarray(f) for f in upscale(frames, scale)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def save_video(frames: np.ndarray, path: Path, scale: int = 3, duration_ms: int = 120) -> Path:
    """Write (V, H, W, 3) uint8 frames as an H.264 MP4 at the GIF's frame rate, upscaled ``scale`` times.

    Encoded through imageio's PyAV plugin (PyAV bundles its own FFmpeg libraries: no system ``ffmpeg``
    needed). H.264's 4:2:0 sampling needs even sides, so an odd side gains one repeated edge row/column.

    Args:
        frames (np.ndarray): (V, H, W, 3) uint8.
        path (Path): the ``.mp4`` file to write.
        scale (int, default 3): nearest-neighbour upscaling factor.
        duration_ms (int, default 120): display time of each frame.
    """
    import imageio.v3 as iio

    video = upscale(frames, scale)
    pad = ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2), (0, 0))
    iio.imwrite(path, np.pad(video, pad, mode="edge"), plugin="pyav", codec="libx264", fps=1000 / duration_ms)
    return path


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, C) frames by an integer factor.

    Args:
        frames (np.ndarray): (..., H, W, C) array.
        scale (int): factor of both sides.
    """
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)
