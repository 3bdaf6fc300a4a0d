"""The nerfacto model's datamanager: every training image cached in one editable ray batch.

All training images are cached in one batch at one resolution; the edit state (:mod:`.edit_state`) is copied
into that batch, beside each pixel's image the view's 2D relevance and whether that map exists, so the pixel
sampler gathers every key per ray and each ray carries its view's relevance target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.edit_state import EditState
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_TARGET, RELEVANCE_VALID


@dataclass
class RelevanceDataManagerConfig(VanillaDataManagerConfig):
    """Vanilla datamanager that caches every training image in one editable batch."""

    _target: type = field(default_factory=lambda: RelevanceDataManager)


def check_one_resolution(cameras) -> None:
    """Refuse training views of different sizes (one line): an edit keeps every view at one resolution.

    Args:
        cameras (Cameras): the training cameras.
    """
    sizes = {
        (int(h), int(w)) for h, w in zip(cameras.height.flatten(), cameras.width.flatten(), strict=True)
    }
    if len(sizes) > 1:
        raise InvalidInputError(
            f"training images have {len(sizes)} different sizes {sorted(sizes)[:4]}: scene editing needs "
            "one resolution; resize the images (e.g. ns-process-data or --downscale-factor) and retry"
        )


class RelevanceDataManager(EditState, VanillaDataManager):
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
        check_one_resolution(self.train_dataset.cameras)
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
        n, h, w, _ = images.shape
        batch[RELEVANCE_TARGET] = torch.zeros(n, h, w, 1, device=images.device)
        batch[RELEVANCE_VALID] = torch.zeros(n, h, w, 1, dtype=torch.bool, device=images.device)
        self.init_edit_state(images[slots].cpu())  # ordered by dataset index
        self.sync_views()

    def sync_view(self, index: int) -> None:
        """Copy the view's stored image and relevance into the cached batch the pixel sampler reads."""
        batch = self.train_image_dataloader.cached_collated_batch
        slot = int(self._slots[index])
        batch["image"][slot] = self.edited_images[index].to(batch["image"].device).float() / 255.0
        target = batch[RELEVANCE_TARGET]
        target[slot] = self.relevance_maps[index].to(target.device).float() / 255.0
        batch[RELEVANCE_VALID][slot] = self.relevance_valid[index].to(target.device)
