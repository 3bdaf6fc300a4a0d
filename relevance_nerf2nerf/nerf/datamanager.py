"""The datamanagers of an edit: the edit state (:mod:`.edit_state`) copied into what each model trains on.

nerfacto (``RelevanceDataManager``): all training images are cached in one batch at one resolution; the edit
state is copied into that batch, beside each pixel's image the view's 2D relevance and whether that map
exists, so the pixel sampler gathers every key per ray and each ray carries its view's relevance target.

splatfacto (``RelevanceFullImageDataManager``): nerfstudio's full-image datamanager, whose per-view cached
images are replaced by the edited ones, each with its view's relevance map and whether it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import (
    FullImageDatamanager,
    FullImageDatamanagerConfig,
)

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


@dataclass
class RelevanceFullImageDataManagerConfig(FullImageDatamanagerConfig):
    """nerfstudio's full-image datamanager (splatfacto's) whose cached training images can be edited."""

    _target: type = field(default_factory=lambda: RelevanceFullImageDataManager)


class RelevanceFullImageDataManager(EditState, FullImageDatamanager):
    """Full training images (one camera per batch) from the edit state: the current (edited) image of the
    view, its 2D relevance (``RELEVANCE_TARGET``, (H, W, 1)) and whether it has one (``RELEVANCE_VALID``)."""

    config: RelevanceFullImageDataManagerConfig

    def setup_train(self):
        if torch.device(self.device).type != "cuda":
            self.config.cache_images = "gpu"  # nerfstudio's "gpu" caches on the training device ("cpu" pins)
        check_one_resolution(self.train_dataset.cameras)
        images = [data["image"] for data in self.cached_train]
        if images[0].shape[-1] != 3:
            raise InvalidInputError(
                f"training images have {images[0].shape[-1]} channels: scene editing needs RGB without alpha"
            )
        originals = torch.stack([i.float() / 255.0 if i.dtype == torch.uint8 else i for i in images])
        self.init_edit_state(originals.cpu())  # cached_train is ordered by dataset index
        self.sync_views()

    def sync_view(self, index: int) -> None:
        """Put the view's stored image and relevance into its cached training data."""
        data = self.cached_train[index]
        image = self.edited_images[index].to(data["image"].device)
        data["image"] = image if data["image"].dtype == torch.uint8 else image.float() / 255.0
        data[RELEVANCE_TARGET] = self.relevance_maps[index].float() / 255.0
        data[RELEVANCE_VALID] = self.relevance_valid[index].reshape(1, 1, 1).clone()
