"""Errors with messages a user can act on. Commands print them as one line and exit non-zero."""

from __future__ import annotations


class RelevanceError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class InvalidInputError(RelevanceError, ValueError):
    """A user-supplied argument or file is unusable (missing image, empty instruction, bad tau)."""


class OutputWriteError(RelevanceError):
    """An output could not be written (disk full, read-only place); nothing of it was left behind."""


class ModelNotFoundError(RelevanceError):
    """Editor weights could not be loaded (no network, wrong hub id, wrong local directory)."""


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
