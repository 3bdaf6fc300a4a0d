"""A datamanager whose training images and relevance maps can be edited in place (paper section 4.3).

All training images are cached in one batch at one resolution. Beside the batch's ``image`` the
datamanager stores, per view, the current (edited) image, the 2D relevance map and whether that map exists;
the pixel sampler gathers every batch key per ray, so each ray carries its view's relevance target.
Editing bookkeeping also lives here: which view is due next (a seeded permutation, reshuffled each pass)
and how often each view was edited.

The editable state is kept as buffers indexed by dataset index (the batch slot order is random), so it is
saved with every nerfstudio checkpoint and a resumed run continues the edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from torch import Tensor

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.model import RELEVANCE_TARGET, RELEVANCE_VALID

_STATE_KEYS = ("edited_images", "relevance_maps", "relevance_valid", "edit_counts", "edits_done")


@dataclass
class RelevanceDataManagerConfig(VanillaDataManagerConfig):
    """Vanilla datamanager that caches every training image in one editable batch."""

    _target: type = field(default_factory=lambda: RelevanceDataManager)


def _to_uint8(values: Tensor) -> Tensor:
    return (values.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class RelevanceDataManager(VanillaDataManager):
    """Original captures, current training images and per-view relevance maps, editable by dataset index."""

    config: RelevanceDataManagerConfig

    def setup_train(self):
        num_views = len(self.train_dataset)
        requested = self.config.train_num_images_to_sample_from
        if requested != -1 and requested < num_views:
            raise InvalidInputError(
                f"scene editing keeps every training image in memory, but train-num-images-to-sample-from is "
                f"{requested} of {num_views}: leave it at -1"
            )
        cameras = self.train_dataset.cameras
        sizes = {
            (int(h), int(w)) for h, w in zip(cameras.height.flatten(), cameras.width.flatten(), strict=True)
        }
        if len(sizes) > 1:
            raise InvalidInputError(
                f"training images have {len(sizes)} different sizes {sorted(sizes)[:4]}: scene editing needs "
                "one resolution; resize the images (e.g. ns-process-data or --downscale-factor) and retry"
            )
        super().setup_train()
        batch = self.train_image_dataloader.cached_collated_batch
        assert batch is not None
        images = batch["image"]
        if images.shape[-1] != 3:
            raise InvalidInputError(
                f"training images have {images.shape[-1]} channels: scene editing needs RGB without alpha"
            )
        slots = torch.empty(num_views, dtype=torch.long)
        slots[batch["image_idx"].long().cpu()] = torch.arange(num_views)
        self._slots = slots  # dataset index -> slot in the cached batch
        originals = images[slots].cpu()  # (N, H, W, 3) float, ordered by dataset index
        self.original_images = originals.clone()
        n, h, w, _ = originals.shape
        self.register_buffer("edited_images", _to_uint8(originals))
        self.register_buffer("relevance_maps", torch.zeros(n, h, w, 1, dtype=torch.uint8))
        self.register_buffer("relevance_valid", torch.zeros(n, dtype=torch.bool))
        self.register_buffer("edit_counts", torch.zeros(n, dtype=torch.long))
        self.register_buffer("edits_done", torch.zeros((), dtype=torch.long))
        batch[RELEVANCE_TARGET] = torch.zeros(n, h, w, 1, device=images.device)
        batch[RELEVANCE_VALID] = torch.zeros(n, h, w, 1, dtype=torch.bool, device=images.device)
        self._sync_batch()

    # --- reading -------------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return len(self.train_dataset)

    def original_image(self, index: int) -> Tensor:
        """The view's original capture, (1, 3, H, W) float in [0, 1] on the CPU."""
        return self.original_images[index].permute(2, 0, 1)[None].clone()

    def current_image(self, index: int) -> Tensor:
        """The view's current training image (edited or original), (1, 3, H, W) float in [0, 1]."""
        return self.edited_images[index].permute(2, 0, 1)[None].float().cpu() / 255.0

    def relevance_map(self, index: int) -> Tensor | None:
        """The view's stored 2D relevance, (1, 1, H, W) float in [0, 1], or None if not computed yet."""
        if not bool(self.relevance_valid[index]):
            return None
        return self.relevance_maps[index].permute(2, 0, 1)[None].float().cpu() / 255.0

    def has_relevance(self, index: int) -> bool:
        return bool(self.relevance_valid[index])

    def view_due(self, seed: int, ahead: int = 0) -> int:
        """Dataset index of the view to edit ``ahead`` updates from now (0: the next one): pass p visits the
        views in randperm(N, seed + p)."""
        done = int(self.edits_done) + ahead
        generator = torch.Generator().manual_seed(seed + done // self.num_views)
        return int(torch.randperm(self.num_views, generator=generator)[done % self.num_views])

    # --- writing -------------------------------------------------------------------------------------
    def set_relevance(self, index: int, relevance: Tensor) -> None:
        """Store a (1, 1, H, W) or (H, W) relevance map in [0, 1] for the view and mark it valid."""
        h, w = self.relevance_maps.shape[1:3]
        relevance = relevance.reshape(-1, *relevance.shape[-2:])
        if relevance.shape != (1, h, w):
            raise InvalidInputError(f"relevance map of shape {tuple(relevance.shape)} for a {h}x{w} view")
        self.relevance_maps[index] = _to_uint8(relevance[0, :, :, None]).to(self.relevance_maps.device)
        self.relevance_valid[index] = True
        self._sync_batch(index)

    def set_edited_image(self, index: int, image: Tensor) -> None:
        """Replace the view's training image with a (1, 3, H, W) image in [0, 1]; counts as one edit."""
        h, w = self.edited_images.shape[1:3]
        if tuple(image.shape[-3:]) != (3, h, w):
            raise InvalidInputError(f"edited image of shape {tuple(image.shape)} for a {h}x{w} RGB view")
        self.edited_images[index] = _to_uint8(image.reshape(3, h, w).permute(1, 2, 0)).to(
            self.edited_images.device
        )
        self.edit_counts[index] += 1
        self.edits_done += 1
        self._sync_batch(index)

    def _sync_batch(self, index: int | None = None) -> None:
        """Copy the stored state (all views, or one) into the cached batch the pixel sampler reads."""
        batch = self.train_image_dataloader.cached_collated_batch
        indices = range(self.num_views) if index is None else [index]
        for i in indices:
            slot = int(self._slots[i])
            batch["image"][slot] = self.edited_images[i].to(batch["image"].device).float() / 255.0
            target = batch[RELEVANCE_TARGET]
            target[slot] = self.relevance_maps[i].to(target.device).float() / 255.0
            batch[RELEVANCE_VALID][slot] = self.relevance_valid[i].to(target.device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args, **kwargs) -> None:
        key = prefix + "edited_images"
        if hasattr(self, "edited_images") and key in state_dict:
            saved = tuple(state_dict[key].shape)
            if saved != tuple(self.edited_images.shape):
                raise InvalidInputError(
                    f"the checkpoint holds {saved[0]} training views of {saved[1]}x{saved[2]} pixels, "
                    f"this dataset {self.num_views} of {tuple(self.edited_images.shape[1:3])}: "
                    "it belongs to another scene or resolution; pass the data and --downscale-factor it used"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if hasattr(self, "edited_images") and all(prefix + k in state_dict for k in _STATE_KEYS):
            self._sync_batch()
