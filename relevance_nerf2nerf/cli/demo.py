"""``relevance-demo`` (``make demo``): the whole method end to end on a CPU, beside Instruct-NeRF2NeRF.

1. generate a synthetic scene (``relevance_nerf2nerf.scenes``) with ground-truth object masks;
2. ``ns-train nerfacto-tiny`` on it: the unedited base scene, trained once;
3. ``ns-train relevance-nerf2nerf-tiny --pipeline.base-checkpoint <base> --pipeline.instruction ...`` with the
   bundled toy editor (``relevance_nerf2nerf/assets/toy-editor``, a small trained InstructPix2Pix), and (with
   ``--compare``, off by default) the same from the same base, seed and cameras with
   ``--pipeline.mask-threshold 0``: Instruct-NeRF2NeRF;
4. render every view of every run: GIFs and a contact sheet (input, before, IN2N after, ours after,
   relevance), and measure per method (``relevance_nerf2nerf.evaluation``, from the generator's masks) the
   PSNR outside the edited object, its colour change, the colour change of every other object and the wall
   time of every stage (printed as a table and written to ``metrics.json``).

The training stages run ``ns-train`` as subprocesses, exactly as a user would (their logs go to
``<output-dir>/logs``). With a GPU and the real InstructPix2Pix only the flags change, e.g.::

    relevance-demo --device cuda --editor-model timbrooks/instruct-pix2pix --width 512 --height 512 \\
        --base-method nerfacto --edit-method relevance-nerf2nerf \\
        --base-iterations 30000 --edit-iterations 4000

(``nerfacto`` is nerfstudio's full model; ``relevance-nerf2nerf-small`` keeps the editor in fp16.)
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.diffusion.images import MAX_MEGAPIXELS, check_megapixels
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO, check_iqr_ratio
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth, target_of
from relevance_nerf2nerf.evaluation.sheets import contact_sheet, heatmaps, rgb_rows, save_gif
from relevance_nerf2nerf.outputs import check_output_dir
from relevance_nerf2nerf.scenes.spec import random_scene_spec, ring_cameras

_STEP = re.compile(r"(\d+)\s+\(\s*(\d+(?:\.\d+)?)%\)")
SIDE_BY_SIDE = "input_before_after_relevance.gif"
IN2N = "Instruct-NeRF2NeRF (tau 0)"
EXACT_CAPTURE_ARGS = ("--pipeline.model.camera-optimizer.mode", "off",
                      "--pipeline.model.use-appearance-embedding", "False")  # fmt: skip
"""ns-train settings of both stages for the generated scenes (exact poses, constant lighting)."""
SCHEDULED_GROUPS = ("fields", "proposal-networks", "relevance")
"""Optimizer groups of the edit stage whose learning-rate decay is stretched over the whole run."""


def edit_schedule_args(iterations: int) -> list[str]:
    """ns-train arguments that make the edit stage's learning rates decay over all its ``iterations``.

    The presets' schedules end at their own planned length (300 iterations for ``-tiny``), and nerfstudio does
    not tie them to ``--max-num-iterations``: a longer edit would spend the rest of the run at the final rate
    (1e-4), too low for the NeRF to undo what the shared colour head carries from the edited object over to
    the others. Decaying over the run cuts that on the demo scene (sphere 0.077 -> 0.052 from one base);
    Instruct-NeRF2NeRF's nearly constant rate leaves noisier renders (PSNR outside 26.6 dB).

    Args:
        iterations (int): the edit stage's ``--max-num-iterations``.
    """
    flags = (f"--optimizers.{group}.scheduler.max-steps" for group in SCHEDULED_GROUPS)
    return [arg for flag in flags for arg in (flag, str(iterations))]


@dataclass
class DemoCommand:
    """Generate a scene, train nerfacto on it, edit it by instruction with relevance guidance, render."""

    instruction: str = "make the cube blue"
    """Edit instruction naming an object of the scene ("make the <shape> <colour>" for the toy editor)."""
    scene_seed: int = 0
    """Seed of the generated scene (seed 0: an orange cone, a red cube and a purple sphere)."""
    output_dir: Path = Path("demo_outputs")
    """Each run writes its scene, runs, logs, renders and metrics.json into a fresh sub-folder
    <output-dir>/<UTC date_time>; nothing already there is changed or deleted."""
    base_iterations: int = 1500
    """Iterations of the base reconstruction."""
    edit_iterations: int = 1000
    """Iterations of scene editing after the base checkpoint (one view is edited every 10)."""
    editor_model: str = str(TOY_EDITOR_DIR)
    """InstructPix2Pix weights: the bundled toy editor, a local diffusers folder or a hub id."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device of training, rendering and the editor."""
    num_views: int = 24
    """Number of views of the generated scene."""
    width: int = 64
    """Width of the generated views."""
    height: int = 64
    """Height of the generated views."""
    num_objects: int = 3
    """Number of objects in the generated scene (1-4)."""
    base_method: str = "nerfacto-tiny"
    """nerfstudio method of the base reconstruction."""
    edit_method: str = "relevance-nerf2nerf-tiny"
    """Scene editing method (relevance-nerf2nerf, -small or -tiny)."""
    mask_threshold: float = 0.5
    """tau; 0 reproduces Instruct-NeRF2NeRF (no relevance guidance)."""
    text_guidance: float = 7.5
    """s_T."""
    image_guidance: float = 1.5
    """s_I."""
    relevance_iqr_ratio: float | None = None
    """IQR ratio of each view's relevance map (--pipeline.relevance-iqr-ratio of the edit stage). Default: 3.5
    with the bundled toy editor (TOY_EDITOR_IQR_RATIO, chosen for it on validation scenes), else the
    pipeline's own 2 (SCENE_IQR_RATIO, the authors' value for the real InstructPix2Pix)."""
    seed: int = 0
    """Seed of the editing pipeline (view order, noise levels, diffusion noise)."""
    extra_edit_args: list[str] = field(default_factory=list)
    """Further ns-train arguments for the editing run, e.g. --extra-edit-args=--pipeline.edit-every 5."""
    compare: bool = False
    """Also run Instruct-NeRF2NeRF (the same pipeline with tau 0) from the same base run, seed and cameras,
    and show both edits side by side. Off by default: measured on the 2-core CPU it adds a whole edit stage
    (about 6 minutes), which takes the demo past its 15-minute budget."""
    exact_capture: bool = True
    """The generated views have exact poses and constant lighting: train both stages without pose refinement
    and without per-view appearance embeddings (EXACT_CAPTURE_ARGS). Renders use the average embedding,
    which fits no view and shifted colours (benchmarks/bench_base_quality.py). --no-exact-capture keeps
    the methods' own settings."""


@dataclass
class Stage:
    name: str
    seconds: float


def _ns_train() -> str:
    beside = Path(sys.executable).parent / "ns-train"
    found = str(beside) if beside.exists() else shutil.which("ns-train")
    if found is None:
        raise RelevanceError(
            "ns-train not found: install nerfstudio (make setup) or activate the environment"
        )
    return found


def run_ns_train(args: list[str], total: int, description: str, log_path: Path, progress) -> None:
    """Run ``ns-train`` with a progress bar fed from its step counter; its output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(description, total=total)
    command = [_ns_train(), *args]
    tail: list[str] = []
    with log_path.open("w") as log:
        log.write(" ".join(command) + "\n")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail = (tail + [line.strip()])[-20:]
            for match in _STEP.finditer(line):
                progress.update(task, completed=min(total, int(match.group(1)) + 1))
        code = process.wait()
    if code != 0:
        last = next((t for t in reversed(tail) if t), "")
        raise RelevanceError(f"{description} failed (exit code {code}): {last[:200]} (full log: {log_path})")
    progress.update(task, completed=total)


def _run_dir(root: Path, method: str, timestamp: str) -> Path:
    return root / "demo" / method / timestamp


def write_media(out: Path, rows: dict[str, np.ndarray], gifs: dict[str, np.ndarray]) -> dict[str, Path]:
    """One GIF per entry of ``gifs``, all ``rows`` side by side as a GIF, and a labelled contact sheet PNG.

    Args:
        out: the run's folder.
        rows: label -> (V, H, W, 3) uint8, in contact-sheet order (top to bottom, left to right in the GIF).
        gifs: file stem -> (V, H, W, 3) uint8 frames.
    """
    from PIL import Image

    paths = {f"{name}_gif": save_gif(frames, out / f"{name}.gif") for name, frames in gifs.items()}
    paths["side_by_side_gif"] = save_gif(np.concatenate(list(rows.values()), axis=2), out / SIDE_BY_SIDE)
    paths["contact_sheet"] = out / "contact_sheet.png"
    Image.fromarray(contact_sheet(rows)).save(paths["contact_sheet"])
    return paths


_SEED_LIMIT = 2**32


def validate(command: DemoCommand) -> None:
    """Check every setting before anything is written.

    Args:
        command: the parsed command line.

    Raises :class:`InvalidInputError` (one line naming the flag) for the first unusable setting.
    """
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.diffusion.ip2p import _looks_like_path, resolve_device

    if command.base_iterations < 1 or command.edit_iterations < 1:
        raise InvalidInputError("--base-iterations and --edit-iterations must be at least 1")
    for flag, seed in (("--scene-seed", command.scene_seed), ("--seed", command.seed)):
        if not 0 <= seed < _SEED_LIMIT:
            raise InvalidInputError(f"{flag} must be in [0, {_SEED_LIMIT - 1}], got {seed}")
    if command.num_views < 2:
        raise InvalidInputError(
            f"--num-views must be at least 2 (train and eval views), got {command.num_views}"
        )
    ring_cameras(command.num_views, command.width, command.height)  # the generator's own size checks
    check_megapixels(
        command.height, command.width, MAX_MEGAPIXELS[command.device],
        f"a --width x --height view on {command.device}", "lower --width and --height (e.g. {fit})",
    )  # fmt: skip
    validate_edit_settings(
        command.instruction,
        mask_threshold=command.mask_threshold,
        text_guidance=command.text_guidance,
        image_guidance=command.image_guidance,
    )
    if command.relevance_iqr_ratio is not None:
        check_iqr_ratio(command.relevance_iqr_ratio, "--relevance-iqr-ratio")
    spec = random_scene_spec(command.scene_seed, command.num_objects)
    target_of(command.instruction, [obj.name for obj in spec.objects])
    if command.device == "cuda":
        resolve_device("cuda")
    editor_path = Path(command.editor_model).expanduser()
    if command.editor_model == str(TOY_EDITOR_DIR) and not (editor_path / "model_index.json").is_file():
        raise RelevanceError(f"the bundled toy editor is missing from {editor_path}: reinstall the package")
    path_like = editor_path.exists() or _looks_like_path(command.editor_model)
    if path_like and not (editor_path / "unet").is_dir():
        raise InvalidInputError(
            f"--editor-model {command.editor_model} is not an InstructPix2Pix directory (no unet/): pass a "
            "directory written by save_pretrained or a hub id"
        )
    if not command.edit_method.startswith("relevance-nerf2nerf"):
        raise InvalidInputError(
            f"--edit-method {command.edit_method} is not a scene editing method: use relevance-nerf2nerf, "
            "relevance-nerf2nerf-small or relevance-nerf2nerf-tiny"
        )
    check_output_dir(command.output_dir, "--output-dir")


def default_iqr_ratio(editor_model: str) -> float:
    """The scene relevance IQR ratio for an editor: the bundled toy editor's own (``TOY_EDITOR_IQR_RATIO``),
    else the scene pipeline's (``SCENE_IQR_RATIO``, the authors' value for IP2P).

    Args:
        editor_model (str): hub id or folder of the editor.
    """
    return TOY_EDITOR_IQR_RATIO if editor_model == str(TOY_EDITOR_DIR) else SCENE_IQR_RATIO


def edit_iqr_ratio(command: DemoCommand) -> float:
    """The edit stage's relevance IQR ratio: ``--relevance-iqr-ratio``, else the default for the editor."""
    if command.relevance_iqr_ratio is not None:
        return command.relevance_iqr_ratio
    return default_iqr_ratio(command.editor_model)


def new_run_dir(output_dir: Path) -> Path:
    """Create and return a fresh ``<output_dir>/<UTC time>`` folder (``-2``, ``-3``... if taken).

    Every run writes only there, so nothing a user (or an earlier run) put in ``output_dir`` is touched.

    Args:
        output_dir: the ``--output-dir`` (created if missing).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.gmtime())
    for attempt in itertools.count(1):
        candidate = output_dir / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def run(command: DemoCommand) -> dict:
    """Run every stage; returns the metrics (also written to ``<output-dir>/<run>/metrics.json``).

    Args:
        command: the parsed command line; it is validated before anything is written.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from relevance_nerf2nerf.evaluation.render import load_pipeline, render_dataset
    from relevance_nerf2nerf.scenes import generate_scene

    validate(command)
    console = Console()
    out = new_run_dir(command.output_dir)
    console.print(f"writing this run to {out}")
    runs, scene_dir = out / "runs", out / "scene"
    stages: list[Stage] = []
    iqr_ratio = edit_iqr_ratio(command)

    start = time.perf_counter()
    scene = generate_scene(
        scene_dir, seed=command.scene_seed, num_views=command.num_views, width=command.width,
        height=command.height, num_objects=command.num_objects,
    )  # fmt: skip
    obj, colour = target_of(command.instruction, scene.object_names)
    stages.append(Stage("generate scene", time.perf_counter() - start))
    contents = ", ".join(f"{o.colour} {o.shape}" for o in scene.spec.objects)
    console.print(f"scene: {contents} -> [bold]{command.instruction}[/bold]")

    common = ["--data", str(scene_dir), "--output-dir", str(runs), "--experiment-name", "demo",
              "--vis", "tensorboard", "--machine.device-type", command.device,
              *(EXACT_CAPTURE_ARGS if command.exact_capture else [])]  # fmt: skip
    base_dir = _run_dir(runs, command.base_method, "base")
    ours = f"ours (tau {command.mask_threshold:g})"
    # method -> (run timestamp, tau); Instruct-NeRF2NeRF is the same pipeline with tau 0
    edits = {ours: ("edit", command.mask_threshold)}
    if command.compare:
        edits[IN2N] = ("edit-in2n", 0.0)
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        start = time.perf_counter()
        base_args = [command.base_method, *common, "--timestamp", "base",
                     "--max-num-iterations", str(command.base_iterations)]  # fmt: skip
        base_log = out / "logs" / "base.log"
        run_ns_train(
            base_args, command.base_iterations, f"ns-train {command.base_method}", base_log, progress
        )
        stages.append(Stage(f"train base ({command.base_method})", time.perf_counter() - start))
        checkpoint = sorted((base_dir / "nerfstudio_models").glob("step-*.ckpt"))[-1]
        for method, (timestamp, tau) in edits.items():  # the same base checkpoint, seed and cameras
            start = time.perf_counter()
            edit_args = [
                command.edit_method, *common, "--timestamp", timestamp,
                "--max-num-iterations", str(command.edit_iterations),
                *edit_schedule_args(command.edit_iterations),
                "--pipeline.base-checkpoint", str(checkpoint), "--pipeline.instruction", command.instruction,
                "--pipeline.editor-model", command.editor_model, "--pipeline.editor-device", command.device,
                "--pipeline.mask-threshold", str(tau), "--pipeline.relevance-iqr-ratio", str(iqr_ratio),
                "--pipeline.text-guidance", str(command.text_guidance),
                "--pipeline.image-guidance", str(command.image_guidance),
                "--pipeline.seed", str(command.seed), *command.extra_edit_args,
            ]  # fmt: skip
            log = out / "logs" / f"{timestamp.replace('-', '_')}.log"
            label = f"ns-train {'IN2N' if method == IN2N else command.edit_method}"
            run_ns_train(edit_args, command.edit_iterations, label, log, progress)
            stage = "edit, Instruct-NeRF2NeRF (tau 0)" if method == IN2N else f"edit ({command.edit_method})"
            stages.append(Stage(stage, time.perf_counter() - start))

        start = time.perf_counter()
        task = progress.add_task("render + measure", total=1 + len(edits))
        before = render_dataset(load_pipeline(base_dir / "config.yml"))
        progress.advance(task)
        truth = load_ground_truth(scene_dir, before.names)
        after, results = {}, {}
        for method, (timestamp, tau) in edits.items():
            run_dir = _run_dir(runs, command.edit_method, timestamp)
            after[method] = render_dataset(load_pipeline(run_dir / "config.yml"))
            results[method] = ground_truth_metrics(
                after[method].rgb, before.rgb, truth, obj, colour, after[method].relevance, tau
            )
            progress.advance(task)
    assert truth.images is not None
    rows = {"input": truth.images, "before": before.rgb}
    if command.compare:
        rows["after, IN2N (tau 0)"] = after[IN2N].rgb
    rows[f"after, {ours}"] = after[ours].rgb
    rows = rgb_rows(rows)
    relevance = after[ours].relevance
    rows["relevance (ours)"] = heatmaps(relevance) if relevance is not None else np.zeros_like(rows["before"])
    gifs = {"before": rows["before"], "after": rows[f"after, {ours}"], "relevance": rows["relevance (ours)"]}
    if command.compare:
        gifs["after_in2n"] = rows["after, IN2N (tau 0)"]
    media = write_media(out, rows, gifs)
    stages.append(Stage("render + measure", time.perf_counter() - start))

    metrics = results[ours]
    record = {
        "instruction": command.instruction,
        "scene": {
            "seed": command.scene_seed,
            "objects": contents,
            "views": command.num_views,
            "size": [command.width, command.height],
        },  # fmt: skip
        "metrics": metrics,
        "methods": results,
        "wall_time_s": {s.name: round(s.seconds, 1) for s in stages},
        "total_wall_time_s": round(sum(s.seconds for s in stages), 1),
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
            "relevance_iqr_ratio": iqr_ratio,
        },
        "outputs": {
            k: str(v)
            for k, v in {
                **media, "run_dir": out, "base_run": base_dir,
                **{f"edit_run {m}": _run_dir(runs, command.edit_method, t) for m, (t, _) in edits.items()},
            }.items()
        },  # fmt: skip
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    console.print(results_table(command.instruction, results, stages, metrics["base_psnr_vs_ground_truth"]))
    console.print(f"contact sheet: {media['contact_sheet']}  metrics: {out / 'metrics.json'}")
    return record


def results_table(instruction: str, results: dict[str, dict], stages: list[Stage], base_psnr: float):
    """The demo's table: one column per method, one row per measure, every non-target object included."""
    from rich.table import Table

    table = Table(title=f"relevance-demo: {instruction!r}")
    table.add_column("measure")
    for method in results:
        table.add_column(method, justify="right")
    first = next(iter(results.values()))
    target, colour = first["object"], first["target_colour"]
    blank = [""] * (len(results) - 1)

    def row(label: str, key: str, fmt: str = "{:.3f}") -> None:
        table.add_row(label, *(fmt.format(m[key]) for m in results.values()))

    row("PSNR outside the target, after vs before", "psnr_outside_object_after_vs_before", "{:.2f} dB")
    row(f"{target}: colour change |mean RGB after - before|", "object_colour_change")
    if colour is not None:
        row(f"{target}: colour error to {colour} before", "object_colour_error_before")
        row(f"{target}: colour error to {colour} after", "object_colour_error_after")
    row(f"{target}: nearest named colour after", "object_nearest_colour_after", "{}")
    for other in first["non_target_colour_change"]:
        changes = [f"{m['non_target_colour_change'][other]:.3f}" for m in results.values()]
        table.add_row(f"{other} (not named): colour change after vs before", *changes)
    if "relevance_iou_with_object" in first:
        row("relevance mask IoU with the target", "relevance_iou_with_object")
    table.add_row("base PSNR vs ground truth", f"{base_psnr:.2f} dB", *blank)
    for stage in stages:
        table.add_row(f"wall time: {stage.name}", f"{stage.seconds:.0f} s", *blank)
    table.add_row("wall time: total", f"{sum(s.seconds for s in stages):.0f} s", *blank)
    return table


def main(argv: list[str] | None = None) -> int:
    command = tyro.cli(DemoCommand, args=argv)
    try:
        run(command)
    except RelevanceError as err:
        print(f"relevance-demo: error: {err}", file=sys.stderr)
        return 2
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
