"""Image I/O and size handling for the editor.

Images are float tensors (B, 3, H, W) in [0, 1]. Loading composites transparent images (RGBA, LA,
palette with transparency) on WHITE and expands grayscale to three channels. Sizes that are not multiples
of the latent grid factor are reflect-padded before encoding and cropped back afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from relevance_nerf2nerf.errors import InvalidInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

RELEVANCE_COLORMAP = "turbo"
"""matplotlib colour map of relevance heatmaps: the map nerfstudio's viewer and ``ns-render`` apply to
one-channel outputs by default, so the CLI's heatmaps, contact sheets and rendered relevance look alike."""


# Default size guard of the editor, in megapixels, by device type: about the largest image that edits in a
# few minutes on a laptop CPU (a 6000x4000 photo took 13.9 GB of RAM there), and about what IP2P's UNet
# fits in 24 GB of GPU memory with sliced attention. Above it, refuse, or downscale when asked.
MAX_MEGAPIXELS: dict[str, float] = {"cpu": 1.0, "cuda": 4.0, "mps": 1.0}


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a PNG/JPEG into (1, 3, H, W) float32 in [0, 1]; alpha is composited on white.

    Args:
        path (str | Path): the image file.
        size (tuple[int, int] | None, default None): (height, width) to resize to (antialiased bicubic), e.g.
            from :func:`fit_megapixels`;
            default: the file's own size.
    """
    path = Path(path)
    with _open_image(path) as img:
        try:
            img.load()
            array = _to_rgb_array(img)
        except (OSError, ValueError) as err:
            raise InvalidInputError(
                f"cannot read image '{path}' ({err}): pass a valid PNG or JPEG file"
            ) from err
    image = torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
    if size is not None and tuple(size) != tuple(image.shape[-2:]):
        image = F.interpolate(image, size=tuple(size), mode="bicubic", antialias=True).clamp(0, 1)
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels.

    Args:
        path (str | Path): the image file.
    """
    with _open_image(Path(path)) as img:
        return img.height, img.width


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A mask image (white = on) as (1, 1, H, W) bool: the mean of its channels is at least one half.

    Args:
        path (str | Path): the image file (PNG or JPEG, any mode; transparency counts as white).
        size (tuple[int, int] | None, default None): (height, width) to resize to first; default its own.
    """
    return load_image(path, size=size).mean(dim=1, keepdim=True) >= 0.5


def _open_image(path: Path):
    """PIL's lazy ``Image.open`` with one-line errors for a missing, unreadable or oversized file."""
    from PIL import Image, UnidentifiedImageError

    if path.is_dir():
        raise InvalidInputError(f"image '{path}' is a directory: pass the path of a PNG or JPEG file")
    if not path.is_file():
        raise InvalidInputError(f"image '{path}' does not exist: pass the path of a PNG or JPEG file")
    try:
        return Image.open(path)
    except Image.DecompressionBombError as err:
        raise InvalidInputError(
            f"image '{path}' is larger than PIL's safety limit ({err}): downscale it before editing"
        ) from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read image '{path}' ({err}): pass a valid PNG or JPEG file") from err


def fit_megapixels(height: int, width: int, max_megapixels: float) -> tuple[int, int]:
    """The largest (height, width) with the same aspect ratio and at most ``max_megapixels``.

    Args:
        height (int): image height in pixels.
        width (int): image width in pixels.
        max_megapixels (float): the limit (1 MP = 10^6 pixels).

    Returns the size unchanged when it is within the limit.
    """
    if height * width <= max_megapixels * 1e6:
        return height, width
    pixels = max_megapixels * 1e6
    scale = math.sqrt(pixels / (height * width))
    fit_h = max(1, math.floor(height * scale))
    fit_w = max(1, min(math.floor(width * scale), math.floor(pixels / fit_h)))  # a side clamped to 1 pixel
    return max(1, min(fit_h, math.floor(pixels / fit_w))), fit_w


def check_megapixels(height: int, width: int, max_megapixels: float, what: str, advice: str) -> None:
    """Raise :class:`InvalidInputError` (one line) when an image is larger than ``max_megapixels``.

    Args:
        height (int): image height in pixels.
        width (int): image width in pixels.
        max_megapixels (float): the limit (1 MP = 10^6 pixels).
        what (str): what the image is, e.g. "image 'photo.png' on cpu".
        advice (str): what to do instead, naming the flags (may use ``{fit}``: the size that fits, as WxH).
    """
    if height * width <= max_megapixels * 1e6:
        return
    fit_h, fit_w = fit_megapixels(height, width, max_megapixels)
    raise InvalidInputError(
        f"{what} is {width}x{height} ({height * width / 1e6:.1f} MP), above the {max_megapixels:g} MP limit: "
        + advice.format(fit=f"{fit_w}x{fit_h}")
    )


def _to_rgb_array(img) -> np.ndarray:
    """PIL image of any common mode -> (H, W, 3) float32 in [0, 1]."""
    if img.mode.startswith("I"):  # 16/32-bit integer grayscale
        gray = np.asarray(img, dtype=np.float64)
        gray = gray / (65535.0 if img.mode.startswith("I;16") or gray.max() > 255 else 255.0)
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    if (img.mode == "P" and "transparency" in img.info) or img.mode in ("LA", "PA"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        rgba = np.asarray(img, dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # composite on white
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Quantise floats in [0, 1] to uint8, rounding to nearest (values outside are clamped).

    The one float-to-byte conversion of the package: images, relevance maps and stored edit state all go
    through it. Shape and device are kept; half precision is computed in float32 so that rounding does
    not depend on the input's precision.

    Args:
        values (torch.Tensor): floats in [0, 1], any shape, any device.
    """
    values = values.detach()
    values = values.to(torch.promote_types(values.dtype, torch.float32))
    return values.clamp(0, 1).mul(255).round().to(torch.uint8)


def image_to_array(image: torch.Tensor) -> np.ndarray:
    """An image as a PIL-ready array: (3, H, W) or (1, 3, H, W) floats in [0, 1] -> (H, W, 3) uint8.

    Args:
        image (torch.Tensor): one image, channels first, in [0, 1].
    """
    if image.dim() == 4:
        image = image[0]
    return np.ascontiguousarray(to_uint8(image).permute(1, 2, 0).cpu().numpy())


def save_image(image: torch.Tensor | np.ndarray, path: str | Path) -> Path:
    """Write an image ((1,)3,H,W float tensor in [0, 1] or (H,W[,3]) uint8 array) as PNG or JPEG.

    Args:
        image (torch.Tensor | np.ndarray): a (3, H, W) or (1, 3, H, W) float tensor in [0, 1], or an (H, W) /
            (H, W, 3) uint8 array.
        path (str | Path): the file to write; its suffix picks the format, its folder is created.
    """
    from PIL import Image

    path = Path(path)
    array = image if isinstance(image, np.ndarray) else image_to_array(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def pad_to_multiple(images: torch.Tensor, factor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B,C,H,W) on the bottom/right to multiples of ``factor``; returns the padded tensor and (H, W).

    Reflect padding where the image is large enough, edge replication otherwise.

    Args:
        images (torch.Tensor): (B, C, H, W) images.
        factor (int): the latent grid factor the sides must be multiples of.
    """
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % factor, (-w) % factor
    if pad_h == 0 and pad_w == 0:
        return images, (h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`.

    Args:
        images (torch.Tensor): (..., H', W') padded images.
        size (tuple[int, int]): the (height, width) before padding.
    """
    return images[..., : size[0], : size[1]]


def colorize(relevance: torch.Tensor) -> np.ndarray:
    """Relevance map -> (H, W, 3) uint8 heatmap in :data:`RELEVANCE_COLORMAP` (bright = relevant).

    The same lookup as nerfstudio's ``apply_float_colormap`` (256 entries of matplotlib's table, value
    times 255 truncated), so a map here matches the viewer's and ``ns-render``'s colours.

    Args:
        relevance (torch.Tensor): (H, W), (1, H, W) or (1, 1, H, W) values in [0, 1]; NaN counts as 0.
    """
    import matplotlib

    values = relevance.detach().float().reshape(relevance.shape[-2:]).cpu().nan_to_num(0.0).clamp(0, 1)
    table = torch.tensor(matplotlib.colormaps[RELEVANCE_COLORMAP].colors)
    return to_uint8(table[(values * 255).long()]).numpy()


def mask_to_uint8(mask: torch.Tensor) -> np.ndarray:
    """Bool mask ((1,)(1,)H,W) -> (H, W) uint8, 255 inside.

    Args:
        mask (torch.Tensor): a boolean (H, W), (1, H, W) or (1, 1, H, W) mask.
    """
    return (mask.detach().reshape(mask.shape[-2:]).cpu().numpy().astype(np.uint8)) * 255


def side_by_side(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate (H, W, 3) uint8 panels horizontally.

    Args:
        panels (Sequence[np.ndarray]): (H, W, 3) uint8 images of the same height.
    """
    return np.concatenate(list(panels), axis=1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images (or pixel sets) in [0, 1], computed in float32.

    torchmetrics' ``peak_signal_noise_ratio`` with data range 1 over all elements; identical inputs are
    capped at 100 dB (a mean squared error of 1e-10) so that averages stay finite.

    Args:
        a (torch.Tensor): values in [0, 1], any shape.
        b (torch.Tensor): values in [0, 1], the same shape as ``a``.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return min(float(peak_signal_noise_ratio(a.float(), b.float(), data_range=1.0)), 100.0)
