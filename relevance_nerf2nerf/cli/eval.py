"""``relevance-eval``: measure edits the way the paper does, and against ground truth when there is one.

``relevance-eval scene``: render the same cameras (dataset views or a viewer camera path) from an edited run
and from its unedited base, and compute CLIP text-image / directional / image similarity and frame / edit
consistency (Table 1), PSNR and SSIM outside the edited region (float), LPIPS when its weights are on this
machine, and, with a generated scene's ground-truth masks (``--scene``), the colour change of the target and
of every other object and the IoU of the rendered relevance mask with the target. Writes ``eval.json``,
``eval.md`` (a markdown table) and ``contact_sheet.png``::

    relevance-eval scene --edited-config outputs/bear/relevance-nerf2nerf/<ts>/config.yml \\
        --input-caption "a photo of a bear" --output-caption "a photo of a polar bear" --output-dir eval/bear

(``--base-config`` defaults to the run the edit started from, ``--pipeline.base-checkpoint``.)

``relevance-eval images``: over a folder of records, sweep tau and s_I and write CLIP directional similarity
vs CLIP image similarity for plain InstructPix2Pix (tau = 0) and relevance-guided editing (paper Fig. 4 / 13)
as ``sweep.json`` and ``sweep.png``. The folder holds ``records.jsonl``, one JSON object per line::

    {"image": "images/cat.png", "instruction": "make the cat a tiger",
     "input_caption": "a photo of a cat", "output_caption": "a photo of a tiger"}

(``image`` relative to the folder). Every input is checked before any model loads; the output folder must be
new or empty and appears complete or not at all; errors are one line, exit code 2. The work lives in
``relevance_nerf2nerf.evaluation.scene_eval`` and ``relevance_nerf2nerf.evaluation.image_eval``; this module
only parses the command line and calls it.
"""

from __future__ import annotations

import sys
from typing import Annotated

import tyro

from relevance_nerf2nerf.cli.common import quiet_libraries, run_command
from relevance_nerf2nerf.evaluation.image_eval import ImagesEval, evaluate_images
from relevance_nerf2nerf.evaluation.scene_eval import (
    SceneEval,
    check_scene_inputs,
    evaluate_scene,
    markdown_table,
)

__all__ = ["ImagesEval", "SceneEval", "check_scene_inputs", "entrypoint", "main"]

Command = (
    Annotated[SceneEval, tyro.conf.subcommand("scene")]
    | Annotated[ImagesEval, tyro.conf.subcommand("images")]
)


def _evaluate(command: SceneEval | ImagesEval) -> None:
    if isinstance(command, SceneEval):
        print(markdown_table(evaluate_scene(command)))
    else:
        quiet_libraries()
        evaluate_images(command)
    print(f"outputs: {command.output_dir}")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the sub-command, print where the outputs went; errors: one line, exit code 2.

    Args:
        argv (list[str] | None, default None): the arguments (None: ``sys.argv[1:]``).
    """
    return run_command("relevance-eval", lambda: tyro.cli(Command, args=argv), _evaluate)  # type: ignore


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
