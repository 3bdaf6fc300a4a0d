"""Outputs (folders, sets of files) that appear whole or not at all, and never replace what the user had."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from relevance_nerf2nerf.errors import InvalidInputError, check_output_dir


def check_new_output_dir(path: Path, flag: str = "--output-dir") -> None:
    """Refuse (one line) an output folder that already holds files, a file, or an unwritable place.

    Args:
        path: the folder the command will create.
        flag: the option that named it, for the message.
    """
    check_output_dir(path, flag)  # not a file, not inside one, writable
    if path.exists() and any(path.iterdir()):
        raise InvalidInputError(
            f"{flag} {path} already exists and is not empty: choose a new folder (nothing is overwritten)"
        )


@contextmanager
def staged_output_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``path``; on success it is renamed to ``path`` (atomic on one file
    system), on any error it is removed, so ``path`` appears complete or not at all.

    Args:
        path: the final output folder (must be new or empty, see :func:`check_new_output_dir`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.is_dir():
        path.rmdir()  # empty (checked before the work started)
    os.replace(staging, path)


def write_all(contents: dict[str, Callable[[Path], object]], paths: dict[str, Path]) -> None:
    """Write every output whole or none: each goes to a temporary name beside its destination, and only
    when all are written are they renamed into place (a failure removes the temporary files).

    Args:
        contents: output name -> function writing that output to the path it is given.
        paths: output name -> destination.
    """
    staged: dict[str, Path] = {}
    try:
        for name, write in contents.items():
            target = paths[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            staged[name] = target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}")
            write(staged[name])
        for name, temporary in staged.items():
            os.replace(temporary, paths[name])
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
