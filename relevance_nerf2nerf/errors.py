"""Errors with messages a user can act on. Commands print them as one line and exit non-zero."""

from __future__ import annotations

import os
from pathlib import Path


class RelevanceError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class InvalidInputError(RelevanceError, ValueError):
    """A user-supplied argument or file is unusable (missing image, empty instruction, bad tau)."""


class ModelNotFoundError(RelevanceError):
    """Editor weights could not be loaded (no network, wrong hub id, wrong local directory)."""


def check_output_dir(path: Path, flag: str) -> Path:
    """Raise :class:`InvalidInputError` unless ``path`` is, or can be created as, a writable directory.

    Nothing is created.

    Args:
        path: the directory a command will write into.
        flag: the command-line flag that named it (said in the message).

    Returns the absolute path (symlinks resolved).
    """
    resolved = Path(path).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise InvalidInputError(f"{flag} {path} is a file, not a directory: choose a directory")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInputError(f"{flag} {path} lies inside the file {existing}: choose a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{flag} {path}: {existing} is not writable: choose a writable directory")
    return resolved


def check_output_file(path: Path, what: str, flag: str = "--output") -> None:
    """Raise :class:`InvalidInputError` unless a command can write the file ``path``: it is not an existing
    directory and its folder is, or can be created as, a writable directory (:func:`check_output_dir`).

    Nothing is created.

    Args:
        path: the file a command will write.
        what: how the message names it, e.g. ``"the mask output"``.
        flag (default "--output"): the command-line flag that chose it (said in the message).
    """
    if Path(path).expanduser().is_dir():
        raise InvalidInputError(f"{what} {path} is an existing directory: choose another {flag}")
    check_output_dir(Path(path).expanduser().parent, f"{flag}'s folder")


def report_uncaught_errors_as_one_line() -> None:
    """Make an uncaught :class:`RelevanceError` print ``<program>: error: <message>`` instead of a traceback.

    Installed when nerfstudio imports our method configs, so ``ns-train`` / ``ns-render`` show our input
    errors (empty instruction, checkpoint from another scene...) as one actionable line. Any other exception
    keeps the previous hook's full traceback. The exit status stays non-zero (1).
    """
    import os
    import sys

    previous = sys.excepthook
    if getattr(previous, "_relevance_one_line", False):
        return

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, RelevanceError):
            print(f"{os.path.basename(sys.argv[0]) or 'python'}: error: {exc}", file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    hook._relevance_one_line = True  # type: ignore[attr-defined]
    sys.excepthook = hook
