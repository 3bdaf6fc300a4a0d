"""``relevance-preview``: see what a scene edit would change, and what it would cost, before training.

Computes the 2D relevance of a few views of a dataset for one or more instructions with the scene edit's
settings and writes a contact sheet, per-view mask fractions and a measured cost estimate into a new folder
(``relevance_nerf2nerf.preview``), e.g.::

    relevance-preview --data data/fern --instruction "make the fern autumn red" --output-dir preview-fern
"""

from __future__ import annotations

import sys

import tyro

from relevance_nerf2nerf.cli.common import quiet_libraries, run_command
from relevance_nerf2nerf.preview import PreviewSettings, run_preview


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the preview; an input error becomes one line and exit code 2.

    Args:
        argv (list[str] | None, default None): the arguments (default: the process's).
    """
    description = __doc__.split("\n\n")[0]
    return run_command(
        "relevance-preview", lambda: tyro.cli(PreviewSettings, args=argv, description=description), _run
    )


def _run(settings: PreviewSettings) -> None:
    quiet_libraries()
    output = run_preview(settings)
    print(f"preview written to {output} (contact_sheet.png, preview.json, preview.md)")


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
