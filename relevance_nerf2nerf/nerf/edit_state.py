"""The edit state of a scene edit, shared by the datamanagers of both scene models (paper section 4.3).

Per training view, by dataset index: the original capture, the current (edited) image, the 2D relevance map
and whether that map exists, and how often the view was edited; plus the run's update count, the view order
(a seeded permutation, reshuffled each pass) and the instruction the relevance maps belong to (a fingerprint,
so a run resumed with another instruction is recognised). The state lives in buffers of the datamanager
itself, so it is saved with every nerfstudio checkpoint (keys ``datamanager.edited_images``, ...) and a
resumed run continues the edit. Each datamanager says how a view's state reaches what its model trains on
(``sync_view``): the nerfacto datamanager copies it into its cached ray batch, the splatfacto one into its
cached images.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from relevance_nerf2nerf.diffusion.images import to_uint8
from relevance_nerf2nerf.errors import InvalidInputError

EDIT_STATE_KEYS = ("edited_images", "relevance_maps", "relevance_valid", "edit_counts", "edits_done")
"""The datamanager buffers that hold the edit state (checkpoint keys ``datamanager.<name>``)."""

INSTRUCTION_KEYS = ("instruction_key", "from_capture")
"""Buffers of the instruction the relevance maps belong to and of the views whose next update starts from
the capture (a new edit); checkpoints written before they existed load without them."""


def instruction_key(instruction: str) -> int:
    """A stable, non-zero 63-bit fingerprint of an instruction (0 stands for "none yet").

    Args:
        instruction (str): the editing instruction, as used for the relevance maps.
    """
    digest = hashlib.sha256(instruction.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1 or 1


class EditState:
    """Mixin for a nerfstudio datamanager (a ``torch.nn.Module``): originals, edited views, relevance maps,
    counters and the view order, editable by dataset index. Call :meth:`init_edit_state` in ``setup_train``
    and implement :meth:`sync_view`."""

    original_images: Tensor
    edited_images: Tensor
    relevance_maps: Tensor
    relevance_valid: Tensor
    edit_counts: Tensor
    edits_done: Tensor
    instruction_key: Tensor
    from_capture: Tensor

    def init_edit_state(self, originals: Tensor) -> None:
        """Register the state buffers for the captures ``originals``.

        Args:
            originals (Tensor): (N, H, W, 3) float in [0, 1], ordered by dataset index.
        """
        self.original_images = originals.detach().cpu().clone()
        n, h, w, _ = originals.shape
        register = self.register_buffer  # type: ignore[attr-defined]
        register("edited_images", to_uint8(originals.cpu()))
        register("relevance_maps", torch.zeros(n, h, w, 1, dtype=torch.uint8))
        register("relevance_valid", torch.zeros(n, dtype=torch.bool))
        register("edit_counts", torch.zeros(n, dtype=torch.long))
        register("edits_done", torch.zeros((), dtype=torch.long))
        register("instruction_key", torch.zeros((), dtype=torch.long))
        register("from_capture", torch.zeros(n, dtype=torch.bool))

    def sync_view(self, index: int) -> None:
        """Copy view ``index``'s current image and relevance into what the model trains on.

        Args:
            index (int): dataset index of the training view.
        """
        raise NotImplementedError

    def sync_views(self, indices: list[int] | None = None) -> None:
        """:meth:`sync_view` for ``indices`` (default: every view).

        Args:
            indices (list[int] | None, default None): dataset indices; None: every view.
        """
        for index in range(self.num_views) if indices is None else indices:
            self.sync_view(index)

    # --- reading -------------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        """Number of training views."""
        return int(self.edited_images.shape[0])

    def original_image(self, index: int) -> Tensor:
        """The view's original capture, (1, 3, H, W) float in [0, 1] on the CPU.

        Args:
            index (int): dataset index of the training view.
        """
        return self.original_images[index].permute(2, 0, 1)[None].clone()

    def current_image(self, index: int) -> Tensor:
        """The view's current training image (edited or original), (1, 3, H, W) float in [0, 1].

        Args:
            index (int): dataset index of the training view.
        """
        return self.edited_images[index].permute(2, 0, 1)[None].float().cpu() / 255.0

    def relevance_map(self, index: int) -> Tensor | None:
        """The view's stored 2D relevance, (1, 1, H, W) float in [0, 1], or None if not computed yet.

        Args:
            index (int): dataset index of the training view.
        """
        if not bool(self.relevance_valid[index]):
            return None
        return self.relevance_maps[index].permute(2, 0, 1)[None].float().cpu() / 255.0

    def has_relevance(self, index: int) -> bool:
        """Whether the view's relevance map has been computed and stored.

        Args:
            index (int): dataset index of the training view.
        """
        return bool(self.relevance_valid[index])

    def view_due(self, seed: int, ahead: int = 0) -> int:
        """Dataset index of the view to edit ``ahead`` updates from now (0: the next one): pass p visits the
        views in randperm(N, seed + p).

        Args:
            seed (int): seed of the per-pass view order.
            ahead (int, default 0): how many updates ahead (0: the next one).
        """
        done = int(self.edits_done) + ahead
        generator = torch.Generator().manual_seed(seed + done // self.num_views)
        return int(torch.randperm(self.num_views, generator=generator)[done % self.num_views])

    # --- writing -------------------------------------------------------------------------------------
    def set_relevance(self, index: int, relevance: Tensor) -> None:
        """Store a (1, 1, H, W) or (H, W) relevance map in [0, 1] for the view and mark it valid.

        Args:
            index (int): dataset index of the training view.
            relevance (Tensor): (1, 1, H, W) or (H, W) map in [0, 1].
        """
        h, w = self.relevance_maps.shape[1:3]
        relevance = relevance.reshape(-1, *relevance.shape[-2:])
        if relevance.shape != (1, h, w):
            raise InvalidInputError(f"relevance map of shape {tuple(relevance.shape)} for a {h}x{w} view")
        self.relevance_maps[index] = to_uint8(relevance[0, :, :, None]).to(self.relevance_maps.device)
        self.relevance_valid[index] = True
        self.sync_view(index)

    def set_edited_image(self, index: int, image: Tensor) -> None:
        """Replace the view's training image with a (1, 3, H, W) image in [0, 1]; counts as one edit.

        Args:
            index (int): dataset index of the training view.
            image (Tensor): (1, 3, H, W) edited image in [0, 1].
        """
        h, w = self.edited_images.shape[1:3]
        if tuple(image.shape[-3:]) != (3, h, w):
            raise InvalidInputError(f"edited image of shape {tuple(image.shape)} for a {h}x{w} RGB view")
        self.edited_images[index] = to_uint8(image.reshape(3, h, w).permute(1, 2, 0)).to(
            self.edited_images.device
        )
        self.edit_counts[index] += 1
        self.edits_done += 1
        self.sync_view(index)

    def restart_edit(self) -> None:
        """Start a new edit of the capture: every view's training image becomes its original capture again,
        every relevance map is dropped (recomputed from the original when the view next comes up), every
        view's edit count restarts at 0 and its next update starts from the capture (not from a render that
        still carries the earlier edit). The update count (the schedule's position) continues."""
        self.edited_images.copy_(to_uint8(self.original_images).to(self.edited_images.device))
        self.relevance_maps.zero_()
        self.relevance_valid.zero_()
        self.edit_counts.zero_()
        self.from_capture.fill_(True)
        self.sync_views()

    # --- checkpoints ---------------------------------------------------------------------------------
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
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
        if hasattr(self, "edited_images") and all(prefix + k in state_dict for k in EDIT_STATE_KEYS):
            self.sync_views()
