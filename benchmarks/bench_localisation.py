"""Benchmark: does the edit stay on the named object? Three methods side by side on generated scenes with
ground-truth masks, from the same base reconstruction, seeds and cameras.

Methods (paper Table 1's baselines):
- ``per-frame IP2P``: every training capture edited independently by the 2D editor (tau 0), no NeRF;
- ``IN2N``: Instruct-NeRF2NeRF = our scene-editing pipeline with tau = 0 (every pixel editable);
- ``ours tau=X``: relevance-guided scene editing, tau in {0.3, 0.5, 0.7} (0.5 is the paper's setting);
- ``ours tau=0.5 cropped``: the same with ``--pipeline.crop-to-relevance`` (view updates denoise only a window
  around the relevance mask, issue 10), to compare quality and seconds with full-frame updates.

Per method and scene: PSNR outside the target (after vs before: base renders for the NeRF methods, the
captures for per-frame IP2P), the colour change of every non-target object (RGB distance of its mean colour,
after vs before), whether the target reached the requested colour (nearest named colour), CLIP directional
similarity when a trained CLIP is given (``--clip-model``; otherwise "unavailable": a random CLIP measures
nothing), and the paper's ensemble claim (Fig. 11): IoU with the target of the per-view 2D relevance masks
of the captures vs the relevance field's rendered masks at the same training views (tau 0.5).

Runs in-process (nerfstudio's Trainer on the CPU presets) with the bundled toy editor, whatever weights
``relevance_nerf2nerf/assets/toy-editor`` holds. Results are merged into
``benchmarks/results/localisation.json`` under ``full``, ``quick`` or (any size flag given) ``custom``::

    OMP_NUM_THREADS=1 python benchmarks/bench_localisation.py           # full size (CPU, see the README)
    OMP_NUM_THREADS=1 python benchmarks/bench_localisation.py --quick   # CI-sized check
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "localisation.json"
CONSOLE = Console()
SHAPE_ORDER = ("cube", "sphere", "cylinder", "cone")
CROPPED = "ours tau=0.5 cropped"


@dataclass
class Args:
    quick: bool = False
    """CI-sized run: 2 scenes, 6 views, a few dozen iterations (checks the plumbing; numbers are rough)."""
    num_scenes: int | None = None
    """Scenes (one instruction each, targets cycling through cube, sphere, cylinder, cone); default 4 / 2."""
    num_views: int | None = None
    """Views per scene (64x64 px); default 8 / 6."""
    base_iterations: int | None = None
    """nerfacto-tiny iterations of each base; default 300 / 60."""
    edit_iterations: int | None = None
    """Scene-editing iterations per method; default 100 / 15."""
    edit_every: int | None = None
    """One view update every this many iterations; default 4 / 3."""
    mask_thresholds: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
    """tau of the scene-editing runs (0 = Instruct-NeRF2NeRF)."""
    crop_variant: bool = True
    """Also run ours at tau 0.5 with --pipeline.crop-to-relevance (issue 10: quality and seconds of cropped
    view updates against full-frame ones, same base, seeds and cameras)."""
    clip_model: str | None = None
    """A TRAINED CLIP (hub id or local folder) for CLIP directional similarity; none: 'unavailable'."""
    editor_model: str | None = None
    """Editor weights (default: the bundled toy editor)."""
    relevance_iqr_ratio: float | None = None
    """IQR ratio of the scene relevance maps; default: relevance-demo's for the editor (TOY_EDITOR_IQR_RATIO
    with the toy editor, else SCENE_IQR_RATIO). The edit runs also take relevance-demo's learning-rate
    schedule (decay over the edit's iterations)."""
    seed: int = 0
    """Seed of the editing pipelines and the 2D edits."""
    threads: int = 1
    """CPU threads (1 is fastest on a shared 2-core machine)."""

    def resolved(self) -> Args:
        quick = self.quick
        defaults = dict(num_scenes=(2, 4), num_views=(6, 8), base_iterations=(60, 300),
                        edit_iterations=(15, 100), edit_every=(3, 4))  # fmt: skip
        values = {k: getattr(self, k) if getattr(self, k) is not None else v[0 if quick else 1]
                  for k, v in defaults.items()}  # fmt: skip
        return Args(**{**asdict(self), **values})


def pick_scenes(num_scenes: int) -> list[tuple[int, str, str, str]]:
    """(scene seed, target shape, its colour, requested colour): seed 0's cube first (the demo), then the
    smallest seeds holding the next shape of ``SHAPE_ORDER``; the requested colour is one no object has."""
    from relevance_nerf2nerf.scenes import COLOURS, random_scene_spec

    picked, seed = [], 0
    for k in range(num_scenes):
        shape = SHAPE_ORDER[k % len(SHAPE_ORDER)]
        while True:
            spec = random_scene_spec(seed, 3)
            objects = {o.shape: o.colour for o in spec.objects}
            seed += 1
            if shape in objects:
                break
        free = [
            c for c in ("blue", "green", "yellow", "purple", "red", "orange") if c not in objects.values()
        ]
        assert free and all(c in COLOURS for c in free)
        picked.append((spec.seed, shape, objects[shape], free[0]))
    return picked


def _trainer_config(base, scene: Path, output: Path, name: str, iterations: int, flags: tuple[str, ...] = ()):
    """In-process nerfstudio config of one run; ``flags`` are ns-train flags applied on top (as tyro does)."""
    from relevance_nerf2nerf._testing import in_process_config

    config = in_process_config(base, scene, output, "bench", name, iterations)
    if flags:
        config = tyro.cli(type(config), args=list(flags), default=config)
    config.steps_per_save = 10**6  # the final checkpoint only
    # exact poses and constant lighting, as relevance-demo trains generated scenes (its EXACT_CAPTURE_ARGS)
    config.pipeline.model.camera_optimizer.mode = "off"
    config.pipeline.model.use_appearance_embedding = False
    return config


def edit_stage_flags(args: Args) -> tuple[str, ...]:
    """ns-train flags that make every edit run edit as relevance-demo's edit stage does: learning rates
    decaying over the run's own iterations, and the resolved relevance IQR ratio."""
    from relevance_nerf2nerf.cli.demo import edit_schedule_args

    ratio = ("--pipeline.relevance-iqr-ratio", str(args.relevance_iqr_ratio))
    return (*edit_schedule_args(args.edit_iterations), *ratio)


def _train(config, editor=None):
    from nerfstudio.engine.trainer import Trainer

    from relevance_nerf2nerf._testing import release_event_writers

    torch.manual_seed(0)
    trainer = Trainer(config, local_rank=0, world_size=1)
    with contextlib.redirect_stdout(io.StringIO()):  # nerfstudio's per-step console output
        trainer.setup()
        if editor is not None:
            trainer.pipeline.editor = editor
        trainer.train()
    release_event_writers()
    return trainer


def _scores(after, before, truth, target, colour, relevance=None) -> dict:
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics

    m = ground_truth_metrics(after, before, truth, target, colour, relevance, tau=0.5)
    keep = ("psnr_outside_object_after_vs_before", "ssim_outside_object_after_vs_before",
            "object_colour_error_before", "object_colour_error_after", "object_nearest_colour_after",
            "edit_hit", "non_target_colour_change", "max_non_target_colour_change",
            "relevance_iou_with_object")  # fmt: skip
    return {k: m[k] for k in keep if k in m}


def _clip_directional(clip, before, after, shape, old, new) -> float | str:
    if clip is None:
        return "unavailable"
    from relevance_nerf2nerf.evaluation.clip import directional_similarity

    t_in, t_out = clip.texts([f"a photo of a {old} {shape}", f"a photo of a {new} {shape}"])
    return directional_similarity(clip.images(before), clip.images(after), t_in, t_out)


def run_scene(args: Args, scene_seed: int, shape: str, old: str, new: str, editor, clip, workdir: Path,
              progress, task) -> dict:  # fmt: skip
    """Every method on one scene; returns {method: scores}."""
    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
    from relevance_nerf2nerf.diffusion.images import psnr
    from relevance_nerf2nerf.evaluation.ground_truth import load_ground_truth
    from relevance_nerf2nerf.evaluation.metrics import iou
    from relevance_nerf2nerf.evaluation.render import render_dataset
    from relevance_nerf2nerf.scenes import generate_scene
    from relevance_nerf2nerf.toy_editor.data import instruction as make_instruction

    instruction = make_instruction(shape, new)
    info = generate_scene(workdir / f"scene{scene_seed}", seed=scene_seed, num_views=args.num_views)
    objects = ", ".join(f"{o.colour} {o.shape}" for o in info.spec.objects)
    results: dict = {"scene_seed": scene_seed, "instruction": instruction, "objects": objects, "methods": {}}
    runs = workdir / f"runs{scene_seed}"

    # 1. the base reconstruction, trained once for every NeRF method
    start = time.perf_counter()
    progress.update(task, description=f"seed {scene_seed}: base")
    base = _train(_trainer_config(nerfacto_tiny.config, info.output_dir, runs, "base", args.base_iterations))
    before = render_dataset(base.pipeline)
    truth = load_ground_truth(info.output_dir, before.names)
    results["base_seconds"] = round(time.perf_counter() - start, 1)
    results["base_psnr_vs_ground_truth"] = psnr(before.rgb, truth.images)
    progress.advance(task)

    # 2. per-frame IP2P: each training capture edited alone (tau 0), no NeRF
    start = time.perf_counter()
    progress.update(task, description=f"seed {scene_seed}: per-frame IP2P")
    train_names = sorted(Path(f).name for f in base.pipeline.datamanager.train_dataset.image_filenames)
    captures = load_ground_truth(info.output_dir, train_names)
    captured = torch.stack([_load(info.output_dir / "images" / n) for n in train_names])
    edited, maps = [], []
    for i, image in enumerate(captured):
        generator = torch.Generator().manual_seed(args.seed * 1000 + i)
        chw = image.permute(2, 0, 1)[None]
        edited.append(editor.edit(chw, instruction, mask_threshold=0.0, num_steps=20, generator=generator)
                      .image[0].permute(1, 2, 0))  # fmt: skip
        maps.append(editor.relevance(chw, instruction, generator=generator).pixel[0, 0])
    edited_t = torch.stack(edited)
    results["methods"]["per-frame IP2P"] = {
        **_scores(edited_t, captured, captures, shape, new),
        "clip_directional_similarity": _clip_directional(clip, captured, edited_t, shape, old, new),
        "seconds": round(time.perf_counter() - start, 1),
    }
    target_train = captures.masks[shape]
    results["relevance_iou_2d_maps_tau0.5"] = iou(torch.stack(maps) >= 0.5, target_train)
    progress.advance(task)

    # 3. scene editing from the same base: tau 0 (Instruct-NeRF2NeRF), relevance-guided, and cropped updates
    runs_to_make = [("IN2N (tau 0)" if tau == 0 else f"ours tau={tau:g}", tau, False)
                    for tau in args.mask_thresholds]  # fmt: skip
    if args.crop_variant:
        runs_to_make.append((CROPPED, 0.5, True))
    for name, tau, crop in runs_to_make:
        progress.update(task, description=f"seed {scene_seed}: {name}")
        start = time.perf_counter()
        timestamp = f"tau{tau:g}" + ("-crop" if crop else "")
        config = _trainer_config(relevance_nerf2nerf_tiny.config, info.output_dir, runs, timestamp,
                                 args.edit_iterations, edit_stage_flags(args))  # fmt: skip
        pipeline_config = config.pipeline
        pipeline_config.base_checkpoint = Path(base.base_dir)
        pipeline_config.instruction = instruction
        pipeline_config.mask_threshold = tau
        pipeline_config.edit_every = args.edit_every
        pipeline_config.seed = args.seed
        pipeline_config.export_dataset = False
        pipeline_config.crop_to_relevance = crop
        trainer = _train(config, editor)
        after = render_dataset(trainer.pipeline)
        entry = {
            **_scores(after.rgb, before.rgb, truth, shape, new, after.relevance),
            "clip_directional_similarity": _clip_directional(clip, before.rgb, after.rgb, shape, old, new),
            "view_updates": int(trainer.pipeline.datamanager.edits_done),
            "seconds": round(time.perf_counter() - start, 1),
        }
        if tau > 0:  # the field's masks at the training views, against the 2D maps' IoU above
            datamanager = trainer.pipeline.datamanager
            names = [Path(f).name for f in datamanager.train_dataset.image_filenames]
            rendered = torch.stack([trainer.pipeline.render_view(i)[1][0, 0] for i in range(len(names))])
            order = [names.index(n) for n in train_names]
            entry["relevance_field_iou_train_views_tau0.5"] = iou(rendered[order] >= 0.5, target_train)
        results["methods"][name] = entry
        progress.advance(task)
    return results


def _load(path: Path) -> torch.Tensor:
    from relevance_nerf2nerf.diffusion.images import load_image

    return load_image(path)[0].permute(1, 2, 0)


def summarise(scenes: list[dict]) -> dict:
    """Means over scenes per method (hit rate as a fraction)."""
    methods = scenes[0]["methods"].keys()
    summary = {}
    for method in methods:
        rows = [s["methods"][method] for s in scenes]

        def mean(key: str, rows=rows) -> float | None:
            values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
            return statistics.mean(float(v) for v in values) if values else None

        non_target = [v for r in rows for v in r["non_target_colour_change"].values()]
        summary[method] = {
            "psnr_outside_target_db": mean("psnr_outside_object_after_vs_before"),
            "ssim_outside_target": mean("ssim_outside_object_after_vs_before"),
            "mean_non_target_colour_change": statistics.mean(non_target) if non_target else None,
            "max_non_target_colour_change": max(non_target) if non_target else None,
            "target_hit_rate": mean("edit_hit"),
            "target_colour_error_after": mean("object_colour_error_after"),
            "clip_directional_similarity": mean("clip_directional_similarity") or "unavailable",
            "relevance_field_iou_tau0.5": mean("relevance_field_iou_train_views_tau0.5"),
            "seconds": mean("seconds"),
        }
    summary["2D relevance maps"] = {
        "relevance_iou_tau0.5": statistics.mean(s["relevance_iou_2d_maps_tau0.5"] for s in scenes)
    }
    return summary


def main(args: Args) -> None:
    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
    from relevance_nerf2nerf.cli.demo import default_iqr_ratio
    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.diffusion.relevance import check_iqr_ratio

    sized = {
        k: getattr(args, k)
        for k in (
            "num_scenes",
            "num_views",
            "base_iterations",
            "edit_iterations",
            "edit_every",
            "mask_thresholds",
        )
        if getattr(args, k) != getattr(Args(), k)
    }
    key = "quick" if args.quick and not sized else ("full" if not sized else "custom")
    args = args.resolved()
    warnings.filterwarnings("ignore")  # nerfstudio's and torch's deprecation notes, once per camera
    torch.set_num_threads(args.threads)
    scenes_to_run = pick_scenes(args.num_scenes)
    editor_model = args.editor_model or str(TOY_EDITOR_DIR)
    if args.relevance_iqr_ratio is None:
        args = replace(args, relevance_iqr_ratio=default_iqr_ratio(editor_model))
    check_iqr_ratio(args.relevance_iqr_ratio, "--relevance-iqr-ratio")
    editor = load_editor(editor_model)
    clip = None
    if args.clip_model is not None:
        from relevance_nerf2nerf.evaluation.clip import ClipEmbedder

        clip = ClipEmbedder(args.clip_model)
    stages_per_scene = 2 + len(args.mask_thresholds) + int(args.crop_variant)
    start = time.perf_counter()
    scenes = []
    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=CONSOLE) as progress:
        task = progress.add_task("localisation benchmark", total=stages_per_scene * len(scenes_to_run))
        for seed, shape, old, new in scenes_to_run:
            scenes.append(run_scene(args, seed, shape, old, new, editor, clip, Path(tmp), progress, task))
    summary = summarise(scenes)
    result = {
        "settings": {**asdict(args), "editor_model": editor_model, "view_size": [64, 64]},
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)",
        "total_seconds": round(time.perf_counter() - start, 1),
        "summary": summary,
        "scenes": scenes,
    }
    table = Table("method", "PSNR outside target", "non-target colour change (mean / max)", "target hit",
                  "field IoU", title="localisation benchmark (means over scenes)")  # fmt: skip
    for method, row in summary.items():
        if method == "2D relevance maps":
            table.add_row(method, "", "", "", f"{row['relevance_iou_tau0.5']:.3f}")
            continue
        iou_value = row["relevance_field_iou_tau0.5"]
        table.add_row(
            method,
            f"{row['psnr_outside_target_db']:.2f} dB",
            f"{row['mean_non_target_colour_change']:.3f} / {row['max_non_target_colour_change']:.3f}",
            f"{row['target_hit_rate']:.2f}",
            "" if iou_value is None else f"{iou_value:.3f}",
        )
    CONSOLE.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    CONSOLE.print(f"{result['total_seconds']:.0f} s; results merged into {RESULTS}")


if __name__ == "__main__":
    main(tyro.cli(Args))
