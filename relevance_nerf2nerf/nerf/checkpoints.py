"""Checkpoint loading: a base reconstruction's weights with fresh relevance parameters, checks that a
checkpoint belongs to this scene, and safe (weights-only) unpickling of nerfstudio checkpoints on
torch >= 2.6. The edited dataset's export is :mod:`relevance_nerf2nerf.nerf.export`."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE

from relevance_nerf2nerf.errors import InvalidInputError

_VIEW_COUNT_KEYS = ("field.embedding_appearance.embedding.weight", "camera_optimizer.pose_adjustment")
_FRESH_PREFIXES = ("field.relevance_head.", "gauss_params.relevance", "lpips.")
_EDIT_STATE_KEY = "datamanager.edits_done"
_NUMPY_DTYPES = "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split()


def allow_numpy_in_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read nerfstudio checkpoints on torch >= 2.6.

    nerfstudio 1.1.5 checkpoints pickle numpy scalars (scheduler state). Only numpy's scalar
    reconstructor and dtype classes are allow-listed, so the weights-only unpickler stays on.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    numpy_core = np.core if np.__version__.startswith("1.") else np._core  # renamed in numpy 2
    dtype_classes = sorted({type(np.dtype(name)) for name in _NUMPY_DTYPES}, key=str)
    add_safe_globals([numpy_core.multiarray.scalar, np.dtype, *dtype_classes])


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file, a ``nerfstudio_models`` folder or a run folder -> the latest ``.ckpt`` in it.

    Args:
        path (str | Path): a .ckpt file, a nerfstudio_models folder or a run folder.
    """
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / "nerfstudio_models", path):
        candidates = sorted(folder.glob("step-*.ckpt")) if folder.is_dir() else []
        if candidates:
            return candidates[-1]
    raise InvalidInputError(
        f"no nerfstudio checkpoint at {path}: pass a step-*.ckpt file or the run folder of an ns-train run"
    )


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Read a nerfstudio checkpoint (weights-only unpickling); a truncated or foreign file is one line.

    Args:
        path (Path): the .ckpt file.
    """
    allow_numpy_in_checkpoints()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InvalidInputError(
            f"cannot read checkpoint {path} ({str(err).splitlines()[0][:120]}): it is incomplete or not a "
            "nerfstudio checkpoint; pass another step-*.ckpt or run folder"
        ) from err


def has_edit_state(pipeline_state: dict[str, Any]) -> bool:
    """Whether a checkpoint's pipeline state holds a scene edit's state (edited views, update counters), i.e.
    was written by a relevance-nerf2nerf method rather than a base reconstruction such as nerfacto.

    Args:
        pipeline_state (dict[str, Any]): the checkpoint's ``pipeline`` entry.
    """
    return any(key.removeprefix("module.") == _EDIT_STATE_KEY for key in pipeline_state)


def model_state(pipeline_state: dict[str, Any]) -> dict[str, Any]:
    """The model's entries of a pipeline state dict, without the ``_model.`` (and DDP ``module.``) prefix.

    Args:
        pipeline_state (dict[str, Any]): the checkpoint's ``pipeline`` entry.
    """
    state = {}
    for key, value in pipeline_state.items():
        key = key.removeprefix("module.")
        if key.startswith("_model."):
            state[key.removeprefix("_model.").removeprefix("module.")] = value
    return state


def check_view_count(state: dict[str, Any], num_views: int, source: str) -> None:
    """Raise a clear error when a checkpoint was trained on a different number of training views.

    Args:
        state (dict[str, Any]): the checkpoint's ``pipeline`` entry.
        num_views (int): training views of the current data.
        source (str): where the checkpoint came from (named in the error).
    """
    for key in _VIEW_COUNT_KEYS:
        if key in state and state[key].shape[0] != num_views:
            raise InvalidInputError(
                f"{source} was trained on {state[key].shape[0]} training views, this dataset has "
                f"{num_views}: it belongs to another scene; pass this scene's checkpoint (or its data)"
            )


def report_keys(source: str, missing: list[str], unexpected: list[str], fresh: int = 0) -> None:
    """Say on the console what a checkpoint did not provide and what it held that the model lacks.

    Args:
        source (str): where the checkpoint came from.
        missing (list[str]): model keys the checkpoint lacks.
        unexpected (list[str]): checkpoint keys the model lacks.
        fresh (int, default 0): parameters left at their fresh initialisation.
    """
    note = f" ({fresh} relevance/LPIPS tensors freshly initialised)" if fresh else ""
    CONSOLE.print(f"[bold green]Loaded weights[/bold green] from {source}{note}")
    if missing:
        CONSOLE.print(f"[yellow]Missing keys (left as initialised): {', '.join(missing)}")
    if unexpected:
        CONSOLE.print(f"[yellow]Unexpected keys (ignored): {', '.join(unexpected)}")


def load_base_checkpoint(
    model: torch.nn.Module, path: str | Path, num_views: int
) -> tuple[list[str], list[str]]:
    """Load a nerfacto (or nerfacto-tiny) checkpoint's weights into ``model`` with a fresh relevance head.

    Returns the (missing, unexpected) keys, which are also reported on the console.

    Args:
        model (torch.nn.Module): the model to load into.
        path (str | Path): a .ckpt file or run folder.
        num_views (int): training views of the current data (checked against the checkpoint).
    """
    checkpoint = resolve_checkpoint(path)
    loaded = load_checkpoint_file(checkpoint)
    state = model_state(loaded["pipeline"])
    check_view_count(state, num_views, f"base checkpoint {checkpoint}")
    state = {k: v for k, v in state.items() if not k.startswith(_FRESH_PREFIXES)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_FRESH_PREFIXES)]
    fresh = [k for k in result.missing_keys if k.startswith(_FRESH_PREFIXES)]
    unexpected = list(result.unexpected_keys)
    report_keys(f"base checkpoint {checkpoint}", missing, unexpected, fresh=len(fresh))
    start_from_base = getattr(model, "start_from_base", None)
    if callable(start_from_base):  # splatfacto keys its schedules to the step: continue from the base's
        start_from_base(int(loaded.get("step", 0)))
    return missing, unexpected
