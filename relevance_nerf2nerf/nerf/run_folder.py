"""An edit's run folder is never overwritten by another run: checked before ``config.yml`` is written.

nerfstudio writes a run into ``<output-dir>/<experiment-name>/<method>/<timestamp>``. Started again with the
same ``--experiment-name`` and ``--timestamp`` and no ``--load-dir``, it would overwrite ``config.yml``,
delete the finished run's checkpoints (``save_only_latest_checkpoint``) and start ``edited_dataset/`` over.
:func:`check_run_dir` refuses that in one line when the folder holds an edit's work (a checkpoint or an
edited dataset) or belongs to an edit that is running now. A run resuming its own folder (``--load-dir`` /
``--load-checkpoint`` inside it) is allowed, unless another live process holds the folder.

A running edit holds its folder through :data:`LOCK_NAME` (its process id and host), written at set-up and
removed when the process exits. A lock left by a killed process is stale (no such process on this host) and
never blocks anything, so a run killed at any moment can always be resumed.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from pathlib import Path
from typing import Any

from relevance_nerf2nerf.errors import InvalidInputError

LOCK_NAME = ".relevance-run.lock"
"""File in a run folder naming the process (``{"pid": ..., "host": ...}``) that is training it now."""

EDITED_DATASET = "edited_dataset"
"""Folder of a run holding the exported edited views."""


def _is_edit(config: Any) -> bool:
    """Whether a trainer config is a scene edit of this project (its pipeline has an instruction)."""
    return hasattr(getattr(config, "pipeline", None), "instruction")


def _inside(path: Any, folder: Path) -> bool:
    if path is None:
        return False
    return Path(path).expanduser().resolve().is_relative_to(folder.resolve())


def live_holder(run_dir: Path) -> int | None:
    """The id of another live process on this host that holds ``run_dir`` (its lock), else None.

    A lock of a process that no longer exists (killed), of this process, of another host or that cannot be
    read holds nothing.

    Args:
        run_dir (Path): the run folder.
    """
    try:
        lock = json.loads((run_dir / LOCK_NAME).read_text())
        pid, host = int(lock["pid"]), str(lock["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # it exists, under another user
        return pid
    return pid


def _finished_work(run_dir: Path) -> str | None:
    """What of an edit's work ``run_dir`` holds (its newest checkpoint, or the edited dataset), else None."""
    checkpoints = sorted((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    if checkpoints:
        return f"its checkpoint {checkpoints[-1].name}"
    edited = run_dir / EDITED_DATASET
    if edited.is_dir() and any(edited.iterdir()):
        return f"its {EDITED_DATASET}/"
    return None


def check_run_dir(config: Any) -> None:
    """Refuse (one line) a scene edit that would overwrite another edit's run folder.

    Called before ``config.yml`` is written and again at set-up. Other methods are not checked.

    Args:
        config (TrainerConfig): the run's config (``get_base_dir()`` names its folder).
    """
    if not _is_edit(config):
        return
    run_dir = Path(config.get_base_dir())
    if not run_dir.is_dir():
        return
    holder = live_holder(run_dir)
    if holder is not None:
        raise InvalidInputError(
            f"{run_dir} belongs to an edit that is running now (process {holder}): wait for it, stop it, or "
            "choose another --timestamp or --experiment-name"
        )
    resuming = _inside(config.load_dir, run_dir) or _inside(config.load_checkpoint, run_dir)
    work = _finished_work(run_dir)
    if work is None or resuming:
        return
    if work.endswith(".ckpt"):
        advice = (
            f"resume it with --load-dir {run_dir / 'nerfstudio_models'} (add --total-iterations to train it "
            "longer), or choose another --timestamp or --experiment-name"
        )
    else:  # stopped before its first checkpoint: nothing to resume from
        advice = "choose another --timestamp or --experiment-name, or move that folder away"
    raise InvalidInputError(
        f"{run_dir} already holds an edit ({work}) that this run would overwrite: {advice}"
    )


def hold_run_dir(config: Any) -> None:
    """Mark the run folder as held by this process until it exits (see :func:`live_holder`).

    Args:
        config (TrainerConfig): the run's config.
    """
    if not _is_edit(config):
        return
    run_dir = Path(config.get_base_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")

    def release() -> None:
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():
                lock.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    atexit.register(release)
