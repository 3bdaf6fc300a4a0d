"""User regions of a scene edit: where, in each training view, the user allows the edit to change pixels.

A region comes from a folder of masks (one image per training view, named like the view's image, white = may
change) or from an axis-aligned box in the coordinates of the capture's ``transforms.json``: the box is
mapped into nerfstudio's frame as the dataparser maps the poses (``dataparser_transform``, then
``dataparser_scale``), and a pixel is in the view's region when its camera ray passes through the box (the
box's exact silhouette, occluders included). The edit mask of a view is then relevance >= tau within the
region (``intersect``, the default) or the region alone (``replace``); the editor pastes the capture back
everywhere else, so pixels outside the region stay the capture's in every edited view.

Every region is checked when training is set up, before the first update: missing or unreadable masks, masks
of another size and a box that no view sees are refused in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from relevance_nerf2nerf.diffusion.images import IMAGE_SUFFIXES, load_mask
from relevance_nerf2nerf.errors import InvalidInputError

REGION_MODES = ("intersect", "replace")
"""How a region combines with relevance: the mask within the region, or the region as the mask."""


def check_region_settings(masks: Path | None, box: Sequence[float] | None, mode: str) -> None:
    """Refuse region settings that cannot work, before any data is read (one line naming the flag).

    Args:
        masks (Path | None): ``--pipeline.region-masks``, a folder of mask images.
        box (Sequence[float] | None): ``--pipeline.region-box`` x_min y_min z_min x_max y_max z_max.
        mode (str): ``--pipeline.region-mode``, one of :data:`REGION_MODES`.
    """
    if mode not in REGION_MODES:
        raise InvalidInputError(
            f"--pipeline.region-mode must be one of {', '.join(REGION_MODES)}, got {mode!r}"
        )
    if masks is not None and box is not None:
        raise InvalidInputError("pass either --pipeline.region-masks or --pipeline.region-box, not both")
    if mode == "replace" and masks is None and box is None:
        raise InvalidInputError(
            "--pipeline.region-mode replace edits the region alone, but no region is given: "
            "pass --pipeline.region-masks DIR or --pipeline.region-box"
        )
    if masks is not None and not Path(masks).expanduser().is_dir():
        raise InvalidInputError(
            f"--pipeline.region-masks {masks} is not a folder: pass a folder with one mask per training image"
        )
    if box is not None:
        values = [float(v) for v in box]
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            raise InvalidInputError(
                "--pipeline.region-box needs six finite numbers x_min y_min z_min x_max y_max z_max, "
                f"got {box}"
            )
        if not all(values[i] < values[i + 3] for i in range(3)):
            raise InvalidInputError(
                f"--pipeline.region-box needs x_min < x_max, y_min < y_max and z_min < z_max, got {box}"
            )


def _mask_file(folder: Path, image: Path) -> Path | None:
    """The mask of ``image`` in ``folder``: the same file name, else the same stem with an image suffix."""
    same = folder / image.name
    if same.is_file():
        return same
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{image.stem}{suffix}", folder / f"{image.stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def region_masks_from_folder(folder: Path, images: Sequence[Path], height: int, width: int) -> Tensor:
    """Per training view, the mask of the same name in ``folder``: white (channel mean >= 0.5) may change.

    Args:
        folder (Path): ``--pipeline.region-masks``.
        images (Sequence[Path]): the training images, in dataset order.
        height (int): the training images' height (masks must have it).
        width (int): the training images' width.

    Returns (N, 1, H, W) bool. Raises :class:`InvalidInputError` for a missing, unreadable or wrongly sized
    mask (one line, naming how many and the first).
    """
    folder = Path(folder).expanduser()
    found = {image: _mask_file(folder, Path(image)) for image in images}
    missing = [Path(image).name for image, mask in found.items() if mask is None]
    if missing:
        raise InvalidInputError(
            f"--pipeline.region-masks {folder} lacks the masks of {len(missing)} of {len(images)} training "
            f"views, e.g. {missing[0]}: add one mask per training image, named like it"
        )
    masks = []
    for path in found.values():
        mask = load_mask(path)[0, 0]
        if tuple(mask.shape) != (height, width):
            raise InvalidInputError(
                f"region mask {path} is {mask.shape[1]}x{mask.shape[0]}, the training views "
                f"{width}x{height}: give masks the size of the images the edit trains on (after "
                "--downscale-factor)"
            )
        masks.append(mask)
    return torch.stack(masks)[:, None]


def region_masks_from_box(box: Sequence[float], cameras, transform: Tensor, scale: float) -> Tensor:
    """Per view, the pixels whose camera ray passes through an axis-aligned box (transforms.json's frame).

    The rays (nerfstudio's frame) are mapped back into the capture's frame, inverting the dataparser's
    ``p_ns = scale * (R p + t)``, and intersected with the box (slab method); a ray starting inside the box
    counts.

    Args:
        box (Sequence[float]): x_min y_min z_min x_max y_max z_max in the coordinates of transforms.json.
        cameras (Cameras): the training views' nerfstudio ``Cameras``.
        transform (Tensor): the dataparser's (3, 4) transform ``[R | t]``.
        scale (float): the dataparser's scale factor.

    Returns (N, 1, H, W) bool.
    """
    low, high = torch.tensor(box[:3], dtype=torch.float32), torch.tensor(box[3:], dtype=torch.float32)
    rotation, translation = transform[:3, :3].float().cpu(), transform[:3, 3].float().cpu()
    masks = []
    for index in range(len(cameras)):
        rays = cameras.generate_rays(camera_indices=index, keep_shape=True)
        origins = (rays.origins.cpu() / scale - translation) @ rotation  # R^T (p / scale - t)
        directions = rays.directions.cpu() @ rotation
        safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t1, t2 = (low - origins) / safe, (high - origins) / safe
        near = torch.minimum(t1, t2).amax(dim=-1)
        far = torch.maximum(t1, t2).amin(dim=-1)
        masks.append(((far >= near) & (far > 0)).reshape(1, *origins.shape[:2]))
    return torch.stack(masks)


def training_regions(masks: Path | None, box: Sequence[float] | None, datamanager) -> Tensor | None:
    """The region of every training view (None: no region given), checked: every mask present and of the
    views' size, and a region that at least one view sees.

    Args:
        masks (Path | None): ``--pipeline.region-masks``.
        box (Sequence[float] | None): ``--pipeline.region-box``.
        datamanager (DataManager): the scene's datamanager (its training dataset: image files, cameras,
            dataparser
            transform and scale).

    Returns (N, 1, H, W) bool on the CPU, by dataset index.
    """
    if masks is None and box is None:
        return None
    dataset = datamanager.train_dataset
    outputs = dataset._dataparser_outputs
    cameras = dataset.cameras
    height, width = int(cameras.height.flatten()[0]), int(cameras.width.flatten()[0])
    if masks is not None:
        regions = region_masks_from_folder(masks, list(outputs.image_filenames), height, width)
        if not bool(regions.any()):
            raise InvalidInputError(
                f"every mask in --pipeline.region-masks {masks} is black: white marks where the edit may "
                "change"
            )
        return regions
    regions = region_masks_from_box(
        box, cameras, outputs.dataparser_transform, float(outputs.dataparser_scale)
    )
    if not bool(regions.any()):
        raise InvalidInputError(
            f"no training view sees --pipeline.region-box {' '.join(f'{v:g}' for v in box)}: give the box in "
            "the coordinates of the capture's transforms.json (x_min y_min z_min x_max y_max z_max)"
        )
    return regions


def editor_inputs(relevance: Tensor, region: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
    """What the editor gets for one view: the relevance to threshold and the region to keep the mask in.

    With ``replace`` the region itself is the relevance (1 inside, 0 outside), so the mask is the region
    whatever tau; with ``intersect`` the mask is relevance >= tau within the region.

    Args:
        relevance (Tensor): (1, 1, H, W) relevance in [0, 1].
        region (Tensor | None): (1, 1, H, W) bool, or None (no region: the relevance alone).
        mode (str): one of :data:`REGION_MODES`.
    """
    if region is None:
        return relevance, None
    region = region.to(relevance.device, torch.float32)
    return (region if mode == "replace" else relevance), region
