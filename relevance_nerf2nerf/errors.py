"""Errors with messages a user can act on. Commands print them as one line and exit non-zero."""


class RelevanceError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class InvalidInputError(RelevanceError, ValueError):
    """A user-supplied argument or file is unusable (missing image, empty instruction, tau out of range...)."""


class ModelNotFoundError(RelevanceError):
    """Editor weights could not be loaded (no network, wrong hub id, wrong local directory)."""
