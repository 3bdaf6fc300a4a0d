"""What every command of this project does around its work: quiet library warnings, one-line errors, exit 2.

A user's mistake (:class:`~relevance_nerf2nerf.errors.RelevanceError`) and a full or read-only disk are
answered with ONE line ``<program>: error: <what to do>`` on stderr and exit code 2, never a traceback.
The deprecation warnings torch and nerfstudio print when nerfstudio is imported (``torch.jit.script``,
``torch.cuda.amp.custom_fwd``, several lines each) say nothing a user can act on and would bury that line,
so they are silenced.
"""

from __future__ import annotations

import errno
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from relevance_nerf2nerf.errors import RelevanceError

Command = TypeVar("Command")

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
"""errno values of an OSError that mean "the destination cannot take the output": answered in one line."""


def quiet_library_warnings() -> None:
    """Silence the libraries' FutureWarning and DeprecationWarning messages in this process."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def one_line(err: BaseException) -> str:
    """The message of an error as one line (a multi-line message keeps its first line).

    Args:
        err (BaseException): the error.
    """
    text = str(err).strip()
    if isinstance(err, OSError) and err.errno in DISK_ERRORS:
        where = f" {err.filename}" if err.filename else ""
        text = f"cannot write{where}: {err.strerror or text}; free space or choose a writable place"
    return (text.splitlines() or [type(err).__name__])[0]


def run_command(program: str, parse: Callable[[], Command], work: Callable[[Command], object]) -> int:
    """Parse the command line, run ``work`` on it; errors become one line on stderr and exit code 2.

    Args:
        program (str): the command's name, said at the start of an error line.
        parse (Callable[[], Command]): parses the command line (tyro answers its own usage errors, exit 2).
        work (Callable[[Command], object]): does the command's work.

    Returns the exit code: 0, or 2 after a one-line error.
    """
    quiet_library_warnings()
    command = parse()
    try:
        work(command)
    except RelevanceError as err:
        print(f"{program}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        print(f"{program}: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


def quiet_libraries() -> None:
    """Silence the hub libraries' loading bars and advice so a command that loads models prints one clean bar
    (relevance-edit, relevance-preview, relevance-eval images)."""
    import diffusers
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # transformers' switch turns the hub's download bars off too; a first download of the editor is several
    # gigabytes and its progress is the only sign the command is working, so they are switched back on.
    huggingface_hub.utils.enable_progress_bars()
