"""Edits in sequence: a second instruction applied to the result of a first edit.

Editing an edited scene is a plain edit whose capture is the first edit's export and whose base is the first
edit's run::

    ns-train relevance-nerf2nerf --data <run A>/edited_dataset --pipeline.base-checkpoint <run A> \\
        --pipeline.instruction "make the sphere green"

The second edit then computes its relevance on the first edit's result, pastes the first edit's views back
outside its mask, and starts from the first edit's weights (with a fresh relevance field). Both must belong
together: an edit run given as the base must have left exactly the views that ``--data`` holds, or the second
edit would paste another capture back and undo the first one outside its mask. :func:`check_edit_base` refuses
a mismatch in one line when training is set up.
"""

from __future__ import annotations

from pathlib import Path

from relevance_nerf2nerf.diffusion.images import to_uint8
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import has_edit_state, load_checkpoint_file, resolve_checkpoint

EDITED_VIEWS_KEY = "datamanager.edited_images"
"""Checkpoint entry of an edit run's training views as they stand (uint8, by dataset index)."""


def check_edit_base(path: str | Path, datamanager) -> None:
    """Refuse an edit run as ``--pipeline.base-checkpoint`` unless its edited views are ``--data``'s training
    images (its ``edited_dataset``), bit for bit; a base reconstruction (no edit state) passes.

    Args:
        path (str | Path): ``--pipeline.base-checkpoint`` (a ``.ckpt`` or a run folder).
        datamanager (DataManager): this run's datamanager (``original_images``: the training images of
            ``--data``).
    """
    checkpoint = resolve_checkpoint(path)
    state = {
        key.removeprefix("module."): value
        for key, value in load_checkpoint_file(checkpoint)["pipeline"].items()
    }
    if not has_edit_state(state) or EDITED_VIEWS_KEY not in state:
        return
    views, captures = state[EDITED_VIEWS_KEY].cpu(), to_uint8(datamanager.original_images.cpu())
    advice = "to edit an edited scene pass --data <run>/edited_dataset with --pipeline.base-checkpoint <run>"
    if tuple(views.shape) != tuple(captures.shape):
        raise InvalidInputError(
            f"--pipeline.base-checkpoint {checkpoint} is an edit of {views.shape[0]} views of "
            f"{views.shape[2]}x{views.shape[1]}, --data has {captures.shape[0]} of "
            f"{captures.shape[2]}x{captures.shape[1]}: {advice}"
        )
    differ = int((views != captures).flatten(1).any(dim=1).sum())
    if differ:
        raise InvalidInputError(
            f"--pipeline.base-checkpoint {checkpoint} is an edit whose views differ from --data's training "
            f"images in {differ} of {views.shape[0]} views: {advice}"
        )
