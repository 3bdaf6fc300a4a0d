"""Where commands write: output paths checked before any work, and outputs that appear whole or not at all.

Every writer of this project goes through here: :func:`check_output_dir` / :func:`check_output_file` /
:func:`check_new_output_dir` refuse an unusable destination in one line before anything is computed;
:func:`atomic_write` writes one file under a temporary name and renames it into place; :func:`write_all`
does that for a set of files that must change together; :func:`staged_output_dir` builds a whole folder
beside its destination and renames it into place. Nothing a user already had is replaced by a half-written
file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from relevance_nerf2nerf.errors import InvalidInputError, OutputWriteError


def check_output_dir(path: Path, flag: str) -> Path:
    """Raise :class:`InvalidInputError` unless ``path`` is, or can be created as, a writable directory.

    Nothing is created.

    Args:
        path (Path): the directory a command will write into.
        flag (str): the command-line flag that named it (said in the message).

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
        path (Path): the file a command will write.
        what (str): how the message names it, e.g. ``"the mask output"``.
        flag (default "--output"): the command-line flag that chose it (said in the message).
    """
    if Path(path).expanduser().is_dir():
        raise InvalidInputError(f"{what} {path} is an existing directory: choose another {flag}")
    check_output_dir(Path(path).expanduser().parent, f"{flag}'s folder")


def atomic_write(path: Path, write: Callable[[Path], object], temporary_dir: Path | None = None) -> Path:
    """Write one file whole: ``write`` fills a temporary file, which is then renamed onto ``path`` (atomic on
    one file system); on any error the temporary file is removed and ``path`` is unchanged.

    Args:
        path (Path): the destination.
        write (Callable[[Path], object]): writes the content to the path it is given.
        temporary_dir (Path | None, default None): where the temporary file lives (same file system as
            ``path``); None: beside ``path`` as a hidden file. Checkpoints use a staging folder, since
            nerfstudio's loaders read every name in their folder.

    Returns the destination.
    """
    path = Path(path)
    name = f".{path.stem}.{os.getpid()}.partial{path.suffix}"
    temporary = path.with_name(name) if temporary_dir is None else Path(temporary_dir) / name
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path



def write_json(path: Path, data: object) -> Path:
    """Write ``data`` as indented JSON to ``path`` whole (:func:`atomic_write`), creating its parent folders.

    Args:
        path (Path): the destination.
        data (object): anything ``json.dumps`` accepts.

    Returns the destination.
    """
    import json

    text = json.dumps(data, indent=2) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def check_new_output_dir(path: Path, flag: str = "--output-dir") -> None:
    """Refuse (one line) an output folder that already holds files, a file, or an unwritable place.

    Args:
        path (Path): the folder the command will create.
        flag (str, default '--output-dir'): the option that named it, for the message.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():  # the link itself would be replaced by the new folder
        raise InvalidInputError(
            f"{flag} {path} is a link to {os.readlink(path)}, which does not exist: create that folder first "
            "or choose another"
        )
    check_output_dir(path, flag)  # not a file, not inside one, writable
    if path.exists() and any(path.iterdir()):
        raise InvalidInputError(
            f"{flag} {path} already exists and is not empty: choose a new folder (nothing is overwritten)"
        )


def _write_error(path: Path, err: OSError) -> OutputWriteError:
    """One line for an output that could not be written (disk full, read-only place...)."""
    reason = err.strerror or type(err).__name__
    return OutputWriteError(
        f"cannot write {path}: {reason}; nothing was written: free space or choose another place"
    )


@contextmanager
def staged_output_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden staging folder; on success its files become ``path``, on any error it is removed, so
    ``path`` appears complete or not at all.

    A new ``path`` is built beside its destination and renamed into place (atomic on one file system). An
    existing, empty ``path`` (or a link to one) is filled in place: the staging folder lies inside it and its
    files are renamed into it one by one, so a folder whose parent is read-only can still be written and a
    link keeps pointing where it did. An OSError while writing (disk full) becomes
    :class:`~relevance_nerf2nerf.errors.OutputWriteError`.

    Args:
        path (Path): the final output folder (must be new or empty, see :func:`check_new_output_dir`).
    """
    path = Path(path)
    in_place = path.is_dir()
    try:
        if in_place:
            staging = path / f".partial-{os.getpid()}"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.parent / f".{path.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise _write_error(path, err) from err
    moved: list[Path] = []
    try:
        yield staging
        if in_place:
            for item in sorted(staging.iterdir()):
                os.replace(item, path / item.name)
                moved.append(path / item.name)
            staging.rmdir()
        else:
            os.replace(staging, path)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for item in moved:  # a rename that failed half way: take back what was moved
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(path, err) from err
        raise


def write_all(contents: dict[str, Callable[[Path], object]], paths: dict[str, Path]) -> None:
    """Write every output whole or none: each goes to a temporary name beside its destination, and only
    when all are written are they renamed into place (a failure removes the temporary files; an OSError,
    e.g. a full disk, becomes :class:`~relevance_nerf2nerf.errors.OutputWriteError`).

    Args:
        contents (dict[str, Callable[[Path], object]]): output name -> function writing that output to the
            path it is given.
        paths (dict[str, Path]): output name -> destination.
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
    except OSError as err:
        raise _write_error(paths[name], err) from err
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def recorded_path(path: Path, root: Path) -> str:
    """A path as a results file records it: relative to ``root`` (the repository) when inside it, else only
    its last component, so no file records the folders of the machine that wrote it.

    Args:
        path (Path): the path to record, e.g. a benchmark's ``--output``.
        root (Path): the folder paths are recorded relative to.
    """
    resolved, root = Path(path).resolve(), Path(root).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else resolved.name
