"""``relevance-demo`` (``make demo``): the whole method end to end on a CPU, in about 7 minutes.

1. generate a synthetic scene (``relevance_nerf2nerf.scenes``) with ground-truth object masks;
2. ``ns-train nerfacto-tiny`` on it: the unedited base scene;
3. ``ns-train relevance-nerf2nerf-tiny --pipeline.base-checkpoint <base> --pipeline.instruction ...`` with the
   bundled toy editor (``relevance_nerf2nerf/assets/toy-editor``, a small trained InstructPix2Pix);
4. render every view of both runs: before/after/relevance GIFs and a contact sheet, and measure the PSNR
   outside the edited object (after vs before, from the generator's masks), the colour change inside it and
   the wall time of every stage (printed as a table and written to ``metrics.json``).

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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.diffusion.images import MAX_MEGAPIXELS, check_megapixels, psnr
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError, check_output_dir
from relevance_nerf2nerf.scenes.spec import COLOURS, SHAPES, random_scene_spec, ring_cameras

_STEP = re.compile(r"(\d+)\s+\(\s*(\d+(?:\.\d+)?)%\)")


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
    seed: int = 0
    """Seed of the editing pipeline (view order, noise levels, diffusion noise)."""
    extra_edit_args: list[str] = field(default_factory=list)
    """Further ns-train arguments for the editing run, e.g. --extra-edit-args=--pipeline.edit-every 5."""


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


def target_of(instruction: str, scene_objects: list[str]) -> tuple[str, str | None]:
    """The object an instruction names (must be in the scene) and the colour it asks for (if any)."""
    words = re.findall(r"[a-z]+", instruction.lower())
    shapes = [w for w in words if w in SHAPES]
    if not shapes or shapes[0] not in scene_objects:
        named = f"names no object of the scene (no {shapes[0]} in it)" if shapes else "names no object"
        choices = ", ".join(scene_objects)
        raise InvalidInputError(
            f"instruction {instruction!r} {named}: name one of {choices} or change --scene-seed"
        )
    colours = [w for w in words if w in COLOURS]
    return shapes[0], colours[-1] if colours else None


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


def render_run(config: Path) -> dict[str, torch.Tensor]:
    """Render every view of the scene (train and eval split, in frame order) from a trained run.

    Returns ``rgb`` (V, H, W, 3) and, when the model has it, ``relevance`` (V, H, W), both on the CPU.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    from relevance_nerf2nerf.nerf.checkpoints import allow_numpy_in_checkpoints

    allow_numpy_in_checkpoints()
    with warnings.catch_warnings():  # nerfstudio's indexing deprecation warnings, once per camera
        warnings.simplefilter("ignore")
        return _render_all(eval_setup(config, test_mode="test")[1])


def _render_all(pipeline) -> dict[str, torch.Tensor]:
    datamanager = pipeline.datamanager
    views = []
    for dataset in (datamanager.train_dataset, datamanager.eval_dataset):
        for i, name in enumerate(dataset._dataparser_outputs.image_filenames):
            views.append((Path(name).name, dataset.cameras[i : i + 1]))
    views.sort(key=lambda v: v[0])
    outputs: dict[str, list[torch.Tensor]] = {"rgb": [], "relevance": []}
    pipeline.eval()
    with torch.no_grad():
        for _, camera in views:
            result = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))
            outputs["rgb"].append(result["rgb"].clamp(0, 1).cpu())
            if "relevance" in result:
                outputs["relevance"].append(result["relevance"][..., 0].clamp(0, 1).cpu())
    return {key: torch.stack(value) for key, value in outputs.items() if value}


def measure(
    scene, obj: str, colour: str | None, before: torch.Tensor, after: torch.Tensor,
    relevance: torch.Tensor | None, tau: float,
) -> dict:  # fmt: skip
    """Edit metrics from the generator's ground truth (every view, train and eval split)."""
    from relevance_nerf2nerf.scenes import load_scene, render_views

    info = load_scene(scene)
    truth, masks = render_views(info.spec, info.cameras)
    mask = masks[obj]
    metrics: dict = {
        "object": obj,
        "target_colour": colour,
        "object_pixel_fraction": mask.float().mean().item(),
        "base_psnr_vs_ground_truth": psnr(before, truth),
        "psnr_outside_object_after_vs_before": psnr(after[~mask], before[~mask]),
        "psnr_inside_object_after_vs_before": psnr(after[mask], before[mask]),
        "object_mean_rgb_before": before[mask].mean(0).tolist(),
        "object_mean_rgb_after": after[mask].mean(0).tolist(),
        "object_colour_change": (after[mask].mean(0) - before[mask].mean(0)).norm().item(),
    }
    references = {
        c: render_views(info.spec, info.cameras, recolour={obj: c})[0][mask].mean(0) for c in COLOURS
    }
    mean_after = after[mask].mean(0)
    nearest = min(references, key=lambda c: (references[c] - mean_after).norm().item())
    metrics["object_nearest_colour_after"] = nearest
    if colour is not None:
        target = references[colour]
        metrics["object_colour_error_before"] = (before[mask].mean(0) - target).norm().item()
        metrics["object_colour_error_after"] = (mean_after - target).norm().item()
        metrics["edit_hit"] = nearest == colour
    if relevance is not None:
        predicted = relevance >= tau
        metrics["relevance_iou_with_object"] = (
            (predicted & mask).sum() / (predicted | mask).sum().clamp(min=1)
        ).item()
    return metrics


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().byte().numpy()


def write_media(out: Path, truth: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
                relevance: torch.Tensor | None, scale: int = 3) -> dict[str, Path]:  # fmt: skip
    """GIFs of every view (before, after, relevance, all side by side) and a contact sheet PNG."""
    from PIL import Image

    from relevance_nerf2nerf.diffusion.images import colorize

    heat = (
        np.stack([colorize(r) for r in relevance]) if relevance is not None else np.zeros_like(_uint8(before))
    )
    rows = {"input": _uint8(truth), "before": _uint8(before), "after": _uint8(after), "relevance": heat}

    def frames(array: np.ndarray) -> list:
        return [
            Image.fromarray(a).resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST) for a in array
        ]

    paths = {}
    for name in ("before", "after", "relevance"):
        paths[f"{name}_gif"] = out / f"{name}.gif"
        images = frames(rows[name])
        images[0].save(paths[f"{name}_gif"], save_all=True, append_images=images[1:], duration=120, loop=0)
    combined = frames(np.concatenate(list(rows.values()), axis=2))
    paths["side_by_side_gif"] = out / "input_before_after_relevance.gif"
    combined[0].save(
        paths["side_by_side_gif"], save_all=True, append_images=combined[1:], duration=120, loop=0
    )
    picks = np.linspace(0, len(before) - 1, min(6, len(before))).round().astype(int)
    sheet = np.concatenate([np.concatenate(list(row[picks]), axis=1) for row in rows.values()], axis=0)
    paths["contact_sheet"] = out / "contact_sheet.png"
    Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST).save(
        paths["contact_sheet"]
    )
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
    from rich.table import Table

    from relevance_nerf2nerf.scenes import generate_scene, load_scene

    validate(command)
    console = Console()
    out = new_run_dir(command.output_dir)
    console.print(f"writing this run to {out}")
    runs, scene_dir = out / "runs", out / "scene"
    stages: list[Stage] = []

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
              "--vis", "tensorboard", "--machine.device-type", command.device]  # fmt: skip
    base_dir = _run_dir(runs, command.base_method, "base")
    edit_dir = _run_dir(runs, command.edit_method, "edit")
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
        start = time.perf_counter()
        edit_args = [
            command.edit_method, *common, "--timestamp", "edit",
            "--max-num-iterations", str(command.edit_iterations),
            "--pipeline.base-checkpoint", str(checkpoint), "--pipeline.instruction", command.instruction,
            "--pipeline.editor-model", command.editor_model, "--pipeline.editor-device", command.device,
            "--pipeline.mask-threshold", str(command.mask_threshold),
            "--pipeline.text-guidance", str(command.text_guidance),
            "--pipeline.image-guidance", str(command.image_guidance), "--pipeline.seed", str(command.seed),
            *command.extra_edit_args,
        ]  # fmt: skip
        run_ns_train(
            edit_args,
            command.edit_iterations,
            f"ns-train {command.edit_method}",
            out / "logs" / "edit.log",
            progress,
        )
        stages.append(Stage(f"edit ({command.edit_method})", time.perf_counter() - start))

        start = time.perf_counter()
        task = progress.add_task("render before/after", total=2)
        before = render_run(base_dir / "config.yml")
        progress.update(task, advance=1)
        after = render_run(edit_dir / "config.yml")
        progress.update(task, advance=1)
    relevance = after.get("relevance")
    metrics = measure(scene_dir, obj, colour, before["rgb"], after["rgb"], relevance, command.mask_threshold)
    from relevance_nerf2nerf.scenes import render_views

    info = load_scene(scene_dir)
    truth, _ = render_views(info.spec, info.cameras)
    media = write_media(out, truth, before["rgb"], after["rgb"], relevance)
    stages.append(Stage("render + measure", time.perf_counter() - start))

    record = {
        "instruction": command.instruction,
        "scene": {
            "seed": command.scene_seed,
            "objects": contents,
            "views": command.num_views,
            "size": [command.width, command.height],
        },  # fmt: skip
        "metrics": metrics,
        "wall_time_s": {s.name: round(s.seconds, 1) for s in stages},
        "total_wall_time_s": round(sum(s.seconds for s in stages), 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
        "outputs": {
            k: str(v)
            for k, v in {**media, "run_dir": out, "base_run": base_dir, "edit_run": edit_dir}.items()
        },
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")

    table = Table(title=f"relevance-demo: {command.instruction!r}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "PSNR outside the object, after vs before", f"{metrics['psnr_outside_object_after_vs_before']:.2f} dB"
    )
    table.add_row("object colour change |mean RGB after - before|", f"{metrics['object_colour_change']:.3f}")
    if colour is not None:
        table.add_row(
            f"object colour error to {colour} (before -> after)",
            f"{metrics['object_colour_error_before']:.3f} -> {metrics['object_colour_error_after']:.3f}",
        )
    table.add_row("object's nearest named colour after", metrics["object_nearest_colour_after"])
    if "relevance_iou_with_object" in metrics:
        table.add_row("relevance mask IoU with the object", f"{metrics['relevance_iou_with_object']:.3f}")
    table.add_row("base PSNR vs ground truth", f"{metrics['base_psnr_vs_ground_truth']:.2f} dB")
    for stage in stages:
        table.add_row(f"wall time: {stage.name}", f"{stage.seconds:.0f} s")
    table.add_row("wall time: total", f"{record['total_wall_time_s']:.0f} s")
    console.print(table)
    console.print(f"contact sheet: {media['contact_sheet']}  metrics: {out / 'metrics.json'}")
    return record


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
