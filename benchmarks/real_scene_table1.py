"""The paper's Table 1 on a real capture: per-frame IP2P vs Instruct-NeRF2NeRF vs ours, from ONE base.

With the real InstructPix2Pix and CLIP weights and a GPU, one command reproduces the LLFF fern edit and its
Table 1 row (``../shared/data/llff-fern``: 20 photographs at 504x378, COLMAP poses)::

    python benchmarks/real_scene_table1.py --data ../shared/data/llff-fern --instruction "make the fern autumn-coloured" --input-caption "a photo of a fern" --output-caption "a photo of an autumn fern" --output-dir table1-fern

Defaults are the paper's setting: base ``nerfacto`` (30k iterations), edits ``relevance-nerf2nerf`` (4000
iterations, one view update every 10, 20 denoising steps from a noise level in [0.02, 0.98]), editor
``timbrooks/instruct-pix2pix`` (s_T 7.5, s_I 1.5), CLIP ``openai/clip-vit-large-patch14``, device cuda.

Steps, all in this process (nerfstudio's Trainer, as ``benchmarks/bench_localisation.py`` runs it):

1. train the base reconstruction once (``--base-method``);
2. (a) per-frame IP2P: every training capture edited independently by the editor, tau 0, starting from pure
   noise with ``--ip2p-steps`` DDIM steps (the paper's image-editing setting), no NeRF;
3. (b) Instruct-NeRF2NeRF: ``--edit-method`` from the base with ``--pipeline.mask-threshold 0``;
4. (c) ours: the same from the same base, seed and cameras with ``--mask-threshold`` (0.5);
5. measure every method at the training cameras (in frame-name order, so consecutive views are neighbours):
   the NeRF methods' renders against the base's renders, per-frame IP2P's edits against the captures.

Paper column -> what is measured (``relevance_nerf2nerf.evaluation``; E = CLIP embedding, b_i / a_i = view i
before / after the edit, means over views):

- Txt-Img Sim -> ``clip_text_image_similarity``  cos(E(a_i), E(output caption))
- Frame Sim   -> ``clip_frame_consistency``      cos(E(a_i), E(a_i+1))
- Edit Sim    -> ``clip_edit_consistency``       cos(E(a_i) - E(b_i), E(a_i+1) - E(b_i+1))
- Image Sim   -> ``clip_image_similarity``       cos(E(a_i), E(b_i))
- Edit PSNR   -> ``psnr_whole_image``            PSNR(a_i, b_i) over whole images, float arithmetic
- NIQE        -> "unavailable" (no NIQE implementation is installed; never a made-up number)

(``clip_directional_similarity``, cos(E(a_i) - E(b_i), E(output caption) - E(input caption)), is written to
the JSON too; it is not a Table 1 column.) The paper's row is a mean over 14 scene edits (LLFF and IN2N
scenes); one fern edit gives one task's numbers, written beside the paper's for reference.

Output, a NEW folder that appears whole or not at all: ``table1.json``, ``table1.md``, ``contact_sheet.png``
(captures, per-frame IP2P, base render, IN2N, ours, ours' relevance), ``logs/`` (nerfstudio's output of every
training stage) and ``runs/`` (the three nerfstudio runs, with config.yml pointing into this folder, so
``relevance-eval scene --edited-config <output-dir>/runs/.../ours/config.yml ...`` measures a run again and
``ns-viewer --load-config`` shows it). Every input is checked, and the editor and CLIP are loaded, before
any training; errors are one line, exit code 2.

On a CPU (plumbing only: the bundled toy editor and a CLIP built locally measure nothing; slow even so, every
training view is rendered three times and edited at least once at 252x189; the test uses a 1/16-scale copy)::

    OMP_NUM_THREADS=1 python benchmarks/real_scene_table1.py --data ../shared/data/llff-fern \\
        --instruction "make the fern autumn-coloured" --input-caption "a photo of a fern" \\
        --output-caption "a photo of an autumn fern" --output-dir /tmp/table1-cpu \\
        --base-method nerfacto-tiny --edit-method relevance-nerf2nerf-tiny --base-iterations 30 \\
        --edit-iterations 4 --edit-every 2 --edit-steps 4 --ip2p-steps 4 --downscale-factor 2 \\
        --editor-model relevance_nerf2nerf/assets/toy-editor --clip-model <local CLIP folder> --device cpu
"""  # noqa: E501 (the one-line command above is meant to be copied whole)

from __future__ import annotations

import contextlib
import copy
import json
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.evaluation.clip import DEFAULT_CLIP
from relevance_nerf2nerf.evaluation.metrics import UNAVAILABLE

CONSOLE = Console(stderr=True)
NOT_THE_PAPERS = "Not comparable with the paper: not its editor and CLIP weights (plumbing check only)."
METHODS = ("IP2P", "IN2N", "Ours")
COLUMNS = {  # paper's Table 1 column -> our metric key
    "Txt-Img Sim": "clip_text_image_similarity",
    "Frame Sim": "clip_frame_consistency",
    "Edit Sim": "clip_edit_consistency",
    "Image Sim": "clip_image_similarity",
    "Edit PSNR": "psnr_whole_image",
    "NIQE": "niqe",
}
PAPER_TABLE1 = {  # Watch Your Steps, Table 1 (means over 14 scene edits, CLIP ViT-L/14)
    "IP2P": {"Txt-Img Sim": 0.2770, "Frame Sim": 0.9669, "Edit Sim": 0.8082, "Image Sim": 0.9111,
             "Edit PSNR": 19.44, "NIQE": 4.02},
    "IN2N": {"Txt-Img Sim": 0.2683, "Frame Sim": 0.9865, "Edit Sim": 0.8822, "Image Sim": 0.8649,
             "Edit PSNR": 28.70, "NIQE": 6.43},
    "Ours": {"Txt-Img Sim": 0.2673, "Frame Sim": 0.9876, "Edit Sim": 0.8754, "Image Sim": 0.8910,
             "Edit PSNR": 31.01, "NIQE": 5.53},
}  # fmt: skip


@dataclass
class Args:
    """Per-frame IP2P, Instruct-NeRF2NeRF and ours on one real capture, from one base: the paper's Table 1."""

    data: Path
    """nerfstudio dataset folder holding transforms.json (e.g. ../shared/data/llff-fern)."""
    output_dir: Path
    """New folder for table1.json, table1.md, contact_sheet.png, logs/ and runs/ (nothing is overwritten)."""
    instruction: str = ""
    """Edit instruction, required (e.g. "make the fern autumn-coloured")."""
    input_caption: str = ""
    """Caption of the unedited scene for the CLIP metrics, required (e.g. "a photo of a fern")."""
    output_caption: str = ""
    """Caption of the edited scene for the CLIP metrics, required (e.g. "a photo of an autumn fern")."""
    base_method: str = "nerfacto"
    """nerfstudio method of the base reconstruction (nerfacto-tiny on a CPU)."""
    edit_method: str = "relevance-nerf2nerf"
    """Scene-editing method of IN2N and ours (relevance-nerf2nerf, -small or -tiny)."""
    base_iterations: int = 30000
    """Iterations of the base (the paper: 30k)."""
    edit_iterations: int = 4000
    """Iterations of each scene edit after the base (the paper: 3000-4000)."""
    downscale_factor: int = 1
    """nerfstudio dataparser downscale: images are read from <data>/images_<N> when N > 1 (the fern: 2)."""
    mask_threshold: float = DEFAULTS.mask_threshold
    """tau of ours (IN2N is the same pipeline with tau 0)."""
    text_guidance: float = DEFAULTS.text_guidance
    """s_T of every edit."""
    image_guidance: float = DEFAULTS.image_guidance
    """s_I of every edit."""
    edit_every: int = 10
    """One view update every this many edit iterations (the paper: 10)."""
    edit_steps: int = 20
    """Denoising steps per view update of the scene edits (the paper: 20)."""
    ip2p_steps: int = 100
    """DDIM steps of each per-frame IP2P edit, from pure noise (the paper's image editing: 100)."""
    editor_model: str = DEFAULT_MODEL
    """InstructPix2Pix hub id or local diffusers folder (the bundled toy editor for plumbing checks)."""
    editor_precision: Literal["fp32", "fp16"] = "fp32"
    """Precision of the editor."""
    clip_model: str = DEFAULT_CLIP
    """CLIP hub id or local folder (save_pretrained)."""
    device: str = "cuda"
    """Device of training, rendering, the editor and CLIP."""
    seed: int = 0
    """Seed of training, of every scene edit's schedule and noise, and of the per-frame edits."""


def validate(args: Args) -> None:
    """Every check that needs no model, before anything is loaded or written (one-line errors).

    Args:
        args: the parsed command line.
    """
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.diffusion.ip2p import resolve_device
    from relevance_nerf2nerf.outputs import check_new_output_dir

    if not (args.data / "transforms.json").is_file():
        raise InvalidInputError(
            f"--data {args.data} has no transforms.json: pass a nerfstudio dataset folder "
            "(e.g. ../shared/data/llff-fern)"
        )
    if args.downscale_factor < 1:
        raise InvalidInputError(f"--downscale-factor must be at least 1, got {args.downscale_factor}")
    if args.downscale_factor > 1 and not (args.data / f"images_{args.downscale_factor}").is_dir():
        raise InvalidInputError(
            f"--downscale-factor {args.downscale_factor}: {args.data} has no images_{args.downscale_factor}/ "
            "folder for nerfstudio to read: pass a factor whose folder exists, or 1"
        )
    for flag, caption in (("--input-caption", args.input_caption), ("--output-caption", args.output_caption)):
        if not caption.strip():
            raise InvalidInputError(f"{flag} is empty: the CLIP metrics need both captions")
    if not 0.0 < args.mask_threshold <= 1.0:
        raise InvalidInputError(
            f"--mask-threshold must lie in (0, 1] (tau 0 is the IN2N row), got {args.mask_threshold}"
        )
    for steps in (args.edit_steps, args.ip2p_steps):
        validate_edit_settings(
            args.instruction,
            mask_threshold=args.mask_threshold,
            text_guidance=args.text_guidance,
            image_guidance=args.image_guidance,
            num_steps=steps,
        )
    if min(args.base_iterations, args.edit_iterations, args.edit_every) < 1:
        raise InvalidInputError("--base-iterations, --edit-iterations and --edit-every must be at least 1")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be non-negative, got {args.seed}")
    resolve_device(args.device)
    from nerfstudio.configs.method_configs import all_methods

    if args.base_method not in all_methods:
        raise InvalidInputError(
            f"--base-method {args.base_method} is not a nerfstudio method: use nerfacto "
            "(nerfacto-tiny on a CPU)"
        )
    if not args.edit_method.startswith("relevance-nerf2nerf") or args.edit_method not in all_methods:
        raise InvalidInputError(
            f"--edit-method {args.edit_method} is not a scene editing method: use relevance-nerf2nerf, "
            "relevance-nerf2nerf-small or relevance-nerf2nerf-tiny"
        )
    check_new_output_dir(args.output_dir)


# --- training -------------------------------------------------------------------------------------------
def _trainer_config(args: Args, method: str, runs: Path, label: str, iterations: int):
    from nerfstudio.configs.method_configs import all_methods

    from relevance_nerf2nerf._testing import in_process_config

    config = in_process_config(
        all_methods[method], args.data.resolve(), runs, args.data.name, label, iterations
    )
    config.steps_per_save = 10**9  # the final checkpoint only
    config.machine.device_type = torch.device(args.device).type
    config.mixed_precision = config.mixed_precision and config.machine.device_type == "cuda"
    config.pipeline.datamanager.dataparser.downscale_factor = args.downscale_factor
    return config


def _edit_config(args: Args, runs: Path, label: str, tau: float, base_dir: Path):
    config = _trainer_config(args, args.edit_method, runs, label, args.edit_iterations)
    pipeline = config.pipeline
    pipeline.base_checkpoint = base_dir
    pipeline.instruction = args.instruction
    pipeline.mask_threshold = tau
    pipeline.text_guidance, pipeline.image_guidance = args.text_guidance, args.image_guidance
    pipeline.edit_every, pipeline.edit_steps = args.edit_every, args.edit_steps
    pipeline.editor_model, pipeline.editor_precision = args.editor_model, args.editor_precision
    pipeline.editor_device = args.device
    pipeline.seed = args.seed
    pipeline.export_dataset = False
    return config


def train(config, log: Path, progress, seed: int, editor=None):
    """Set up and train a nerfstudio run in this process; its console output goes to ``log``.

    Args:
        config: the run's TrainerConfig (from :func:`_trainer_config`).
        log: file receiving nerfstudio's console output.
        progress: the rich progress display (one bar over the run's iterations).
        seed: seed of python's, numpy's and torch's generators, set before the set-up (nerfstudio draws from
            all three).
        editor: an already loaded editor given to a scene-editing pipeline (loaded once for all methods).
    """
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    from relevance_nerf2nerf._testing import release_event_writers

    task = progress.add_task(f"  {config.method_name} iterations", total=config.max_num_iterations)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream, contextlib.redirect_stdout(stream):
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        if editor is not None:
            trainer.pipeline.editor = editor
        trainer.callbacks.append(
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                lambda step: progress.update(task, completed=step + 1),
            )
        )
        trainer.train()
    release_event_writers()  # the staging folder is renamed at the end: no writer may keep pointing into it
    progress.remove_task(task)
    return trainer


def write_config(config, staging: Path, output: Path) -> Path:
    """Write a run's config.yml with every path into the staging folder pointing into the final folder;
    returns the run's final folder.

    Args:
        config: the run's TrainerConfig.
        staging: the staging folder the run was trained in.
        output: the final output folder (``staging`` renamed).
    """
    import yaml

    def moved(path: Path) -> Path:
        return output / Path(path).relative_to(staging)

    final = copy.deepcopy(config)
    final.output_dir = moved(config.output_dir)
    if getattr(final.pipeline, "base_checkpoint", None) is not None:
        final.pipeline.base_checkpoint = moved(config.pipeline.base_checkpoint)
    (config.get_base_dir() / "config.yml").write_text(yaml.dump(final), "utf8")
    return final.get_base_dir()


# --- measuring ------------------------------------------------------------------------------------------
def table1_metrics(clip, before: torch.Tensor, after: torch.Tensor, args: Args) -> dict:
    """Every Table 1 metric of one method (see the module docstring for the mapping).

    Args:
        clip: the ClipEmbedder.
        before: (V, H, W, 3) in [0, 1], the unedited views in path order (base renders or captures).
        after: the same views edited.
        args: the command line (captions).
    """
    from relevance_nerf2nerf.evaluation.clip import clip_metrics
    from relevance_nerf2nerf.evaluation.metrics import psnr_outside

    return {
        **clip_metrics(clip, before, after, args.input_caption, args.output_caption),
        "psnr_whole_image": psnr_outside(after, before, None),
        "niqe": UNAVAILABLE,
    }


def _cell(column: str, value) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.2f}" if column in ("Edit PSNR", "NIQE") else f"{value:.4f}"


def markdown(result: dict) -> str:
    """The Table 1 rows of this run and the paper's, as markdown."""
    header = "| method | " + " | ".join(COLUMNS) + " |"
    lines = [
        f"# Table 1 on `{result['data']}`: {result['instruction']!r}",
        "",
        f"editor `{result['editor_model']}`, CLIP `{result['clip_model']}`, {len(result['views'])} training "
        f"views, base `{result['base_method']}` {result['base_iterations']} it., edits "
        f"`{result['edit_method']}` {result['edit_iterations']} it., ours at tau "
        f"{result['mask_threshold']:g}, seed {result['seed']}",
        "",
        header,
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for method in METHODS:
        row = result["methods"][method]
        lines.append(f"| {method} | " + " | ".join(_cell(c, row[key]) for c, key in COLUMNS.items()) + " |")
    for method in METHODS:
        row = PAPER_TABLE1[method]
        lines.append(f"| {method} (paper) | " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |")
    lines += ["", "Paper rows: means over 14 scene edits (LLFF and IN2N scenes), CLIP ViT-L/14.", ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------------------
def run(args: Args) -> dict:
    """Validate, load the editor and CLIP, train and edit, measure, write the output folder; returns the
    table1.json record."""
    from PIL import Image

    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.evaluation.clip import ClipEmbedder
    from relevance_nerf2nerf.evaluation.render import render_dataset
    from relevance_nerf2nerf.evaluation.sheets import contact_sheet, heatmaps, rgb_rows
    from relevance_nerf2nerf.outputs import staged_output_dir

    validate(args)
    editor = load_editor(args.editor_model, device=args.device, precision=args.editor_precision)
    clip = ClipEmbedder(args.clip_model, device=args.device)
    output = args.output_dir.expanduser().resolve()
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    columns = (TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with staged_output_dir(output) as staging, Progress(*columns, console=CONSOLE) as progress:
        stages = progress.add_task("Table 1", total=5)
        runs, logs = staging / "runs", staging / "logs"

        # 1. the base reconstruction, trained once for both scene edits
        progress.update(stages, description="1/5 base reconstruction")
        tick = time.perf_counter()
        config = _trainer_config(args, args.base_method, runs, "base", args.base_iterations)
        base = train(config, logs / "base.log", progress, args.seed)
        run_dirs = {"base": str(write_config(config, staging, output))}
        base_dir = Path(base.base_dir)
        before = render_dataset(base.pipeline, "train")
        dataset = base.pipeline.datamanager.train_dataset
        index = {Path(f).name: i for i, f in enumerate(dataset.image_filenames)}
        captures = torch.stack([dataset.get_image_float32(index[n])[..., :3] for n in before.names])
        del base
        seconds["base"] = time.perf_counter() - tick
        progress.advance(stages)

        # 2. (a) per-frame IP2P: every capture edited alone from pure noise, tau 0, no NeRF
        progress.update(stages, description="2/5 per-frame IP2P")
        tick = time.perf_counter()
        frames = progress.add_task("  edited captures", total=len(captures))
        edited = []
        for i, capture in enumerate(captures):
            result = editor.edit(
                capture.permute(2, 0, 1)[None],
                args.instruction,
                mask_threshold=0.0,
                text_guidance=args.text_guidance,
                image_guidance=args.image_guidance,
                num_steps=args.ip2p_steps,
                generator=torch.Generator().manual_seed(args.seed * 1000 + i),
            )
            edited.append(result.image[0].permute(1, 2, 0).float().cpu())
            progress.advance(frames)
        progress.remove_task(frames)
        after = {"IP2P": torch.stack(edited)}
        seconds["IP2P"] = time.perf_counter() - tick
        progress.advance(stages)

        # 3.-4. (b) Instruct-NeRF2NeRF (tau 0) and (c) ours, from the same base, seed and cameras
        relevance = None
        for number, (method, tau) in enumerate((("IN2N", 0.0), ("Ours", args.mask_threshold)), start=3):
            progress.update(stages, description=f"{number}/5 {method} (tau {tau:g})")
            tick = time.perf_counter()
            config = _edit_config(args, runs, method.lower(), tau, base_dir)
            trainer = train(config, logs / f"{method.lower()}.log", progress, args.seed, editor)
            run_dirs[method] = str(write_config(config, staging, output))
            renders = render_dataset(trainer.pipeline, "train")
            if renders.names != before.names:
                raise RelevanceError(f"the {method} run rendered other views than the base: same --data?")
            after[method], relevance = renders.rgb, renders.relevance
            del trainer
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            seconds[method] = time.perf_counter() - tick
            progress.advance(stages)

        # 5. measure: NeRF methods against the base's renders, per-frame IP2P against the captures
        progress.update(stages, description="5/5 measuring")
        reference = {"IP2P": captures, "IN2N": before.rgb, "Ours": before.rgb}
        methods = {
            m: {**table1_metrics(clip, reference[m], after[m], args), "seconds": round(seconds[m], 1)}
            for m in METHODS
        }
        real = args.editor_model == DEFAULT_MODEL and args.clip_model == DEFAULT_CLIP
        result = {
            "data": str(args.data),
            "instruction": args.instruction,
            "input_caption": args.input_caption,
            "output_caption": args.output_caption,
            "editor_model": args.editor_model,
            "clip_model": args.clip_model,
            "base_method": args.base_method,
            "edit_method": args.edit_method,
            "base_iterations": args.base_iterations,
            "edit_iterations": args.edit_iterations,
            "mask_threshold": args.mask_threshold,
            "seed": args.seed,
            "views": before.names,
            "columns": COLUMNS,
            "methods": methods,
            "paper_table1": PAPER_TABLE1,
            "note": "" if real else NOT_THE_PAPERS,
            "runs": run_dirs,
            "base_seconds": round(seconds["base"], 1),
            "total_seconds": round(time.perf_counter() - start, 1),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
        }  # fmt: skip
        ours = f"ours (tau {args.mask_threshold:g})"
        rows = rgb_rows({"captures": captures, "per-frame IP2P": after["IP2P"], "base render": before.rgb,
                         "IN2N (tau 0)": after["IN2N"], ours: after["Ours"]})  # fmt: skip
        if relevance is not None:
            rows["ours relevance"] = heatmaps(relevance)
        Image.fromarray(contact_sheet(rows)).save(staging / "contact_sheet.png")
        (staging / "table1.json").write_text(json.dumps(result, indent=2) + "\n")
        (staging / "table1.md").write_text(markdown(result))
        progress.advance(stages)
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run, print the table; errors: one line, exit code 2."""
    args = tyro.cli(Args, args=argv)
    warnings.filterwarnings("ignore")  # nerfstudio's and torch's deprecation notes, once per camera
    try:
        result = run(args)
    except RelevanceError as err:
        print(f"real_scene_table1: error: {err}", file=sys.stderr)
        return 2
    print(markdown(result))
    print(f"outputs: {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
