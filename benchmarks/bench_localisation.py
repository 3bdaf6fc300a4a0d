"""Benchmark: does the edit stay on the named object? Methods side by side on generated scenes with
ground-truth masks, from one base reconstruction per scene, with the same seeds and cameras, every figure
measured on HELD-OUT cameras (never trained on; the scene's nerfstudio val/test split).

Methods (paper Table 1's baselines):
- ``per-frame IP2P``: the 2D editor on each held-out ground-truth image independently (tau 0, no NeRF);
- ``IN2N (tau 0)``: Instruct-NeRF2NeRF = our scene-editing pipeline with every pixel editable;
- ``ours tau=X``: relevance-guided scene editing (0.5 is the paper's setting, plus one other tau).

With ``--backend splatfacto`` the scene model is a Gaussian splat (``splatfacto-tiny`` base from the scene's
point cloud, ``relevance-splatfacto-tiny`` edits) and the editing runs are ``IGS2GS-style (tau 0)``
(Instruct-GS2GS: every pixel editable), ``ours tau=0.5`` and ``ours tau=0.5, frozen`` (the Gaussians whose
relevance is below tau get no gradient and no densification); by default on the first two scenes.

Per scene:
- "before" is the base's render at each held-out camera, "after" the edited run's;
- during every NeRF edit, a curve is recorded at regular steps on the held-out cameras: the target's colour
  error to the requested colour, PSNR outside the target and each non-target object's colour change;
- methods are compared at the end and at matched strength: at the weaker method's best target colour error,
  each figure read off each run's curve at its first crossing (``evaluation.strength``);
- ``target_reached``: whether the target's mean colour over the held-out views is nearest the requested one;
- the ensemble claim (paper Fig. 11) at ONE IQR ratio: IoU with the target of the 2D relevance maps (of the
  held-out captures, the cameras the field is rendered at, and of the training captures the field learnt
  from) against the field's rendered masks at the held-out cameras, at the ratio the field is trained with and
  at 1.5 beside it, both at tau 0.5; with ``--measure-renormalisation`` also the field's masks after a
  per-view min-max renormalisation of the rendered relevance (what the authors' code thresholds).

Runs in-process (nerfstudio's Trainer on the CPU presets) with the bundled toy editor. Writes the entry
``full``, ``quick`` or ``custom`` (any size flag given) of ``benchmarks/results/localisation.json``
(entries of older formats are dropped) and a plot ``benchmarks/results/localisation[_quick|_custom].png``
(x = target colour error, y = PSNR outside the target and mean non-target colour change, one line per
method, per scene and pooled)::

    OMP_NUM_THREADS=1 python benchmarks/bench_localisation.py --workers 2   # full size (CPU, see README)
    OMP_NUM_THREADS=1 python benchmarks/bench_localisation.py --quick       # CI-sized check
    OMP_NUM_THREADS=1 python benchmarks/bench_localisation.py --backend splatfacto --workers 2  # splat rows
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
from typing import Literal, NamedTuple

import torch
import tyro

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "localisation.json"
SHAPE_ORDER = ("cube", "sphere", "cylinder", "cone")
REQUEST_ORDER = ("blue", "green", "yellow", "purple", "red", "orange")
CONFUSABLE_DISTANCE = 0.5
"""A requested colour within this RGB distance of another object's colour can be confused with it (the toy
editor's palette: yellow-orange 0.32, red-orange 0.40, purple-blue 0.48; every other pair is further)."""
PAPER_IQR_RATIO = 1.5
"""The paper's IQR ratio for 2D relevance maps, reported beside the field's ratio."""
IP2P = "per-frame IP2P"
FORMAT = "held-out"
"""``views`` of every entry this version writes; entries without it are older formats and are dropped."""


@dataclass
class Args:
    quick: bool = False
    """CI-sized run: 1 scene at 32x32, 4 + 2 views, a few dozen iterations (checks the plumbing only)."""
    backend: Literal["nerfacto", "splatfacto"] = "nerfacto"
    """Scene model of the editing runs: nerfacto with a relevance head, or splatfacto with one relevance value
    per Gaussian (runs tau 0, ours at tau 0.5 and ours at tau 0.5 with the irrelevant Gaussians frozen)."""
    num_scenes: int | None = None
    """Scenes (targets cycle through cube, sphere, cylinder, cone; the 5th and 6th have a confusable colour);
    default 6 / 1 (splatfacto: 2 / 1)."""
    num_views: int | None = None
    """Training views per scene; default 30 / 4 (with 10, a 500-iteration base renders the held-out cameras
    at about 14-16 dB against their ground truth; with 30 at about 22 dB)."""
    num_held_out: int | None = None
    """Held-out (evaluation) views per scene; default 6 / 2."""
    image_size: int | None = None
    """Square view size in pixels; default 64 / 32."""
    base_iterations: int | None = None
    """Iterations of each base (nerfacto-tiny or splatfacto-tiny); default 500 / 40 (splatfacto 1000 / 40)."""
    num_points: int = 2000
    """splatfacto: points of each scene's point cloud, the Gaussians its base starts from."""
    edit_passes: int | None = None
    """Edit length in passes over the training views (one view update every ``edit_every`` iterations);
    default 4 / 1 (in a 2-scene pilot Instruct-NeRF2NeRF reached the colour after 1.0 and 2.5 updates per
    view: 3 passes, plus one)."""
    edit_every: int | None = None
    """One view update every this many iterations; default 5 / 3."""
    edit_steps: int | None = None
    """Denoising steps per view update; default 20 (the paper's) / 4."""
    curve_points_per_pass: int = 2
    """Curve points recorded per pass (at regular steps), besides the base's point at step 0."""
    mask_thresholds: tuple[float, ...] = (0.0, 0.5, 0.3)
    """tau of the nerfacto scene-editing runs (0 = Instruct-NeRF2NeRF; 0.5 the paper's; one other)."""
    measure_renormalisation: bool = True
    """Also measure the field's masks after min-max renormalising each rendered relevance view."""
    editor_model: str | None = None
    """Editor weights (default: the bundled toy editor)."""
    relevance_iqr_ratio: float | None = None
    """IQR ratio the field's maps are computed at; default: relevance-demo's for the editor."""
    seed: int = 0
    """Seed of the editing pipelines and the 2D edits."""
    threads: int = 1
    """CPU threads per worker (1: parallel workers do not oversubscribe the cores)."""
    workers: int = 1
    """Scenes run in this many parallel processes."""
    results: Path = RESULTS
    """JSON file the entry is merged into; the plot is written beside it."""

    def resolved(self) -> Args:
        defaults = dict(num_scenes=(1, 6), num_views=(4, 30), num_held_out=(2, 6), image_size=(32, 64),
                        base_iterations=(40, 500), edit_passes=(1, 4), edit_every=(3, 5),
                        edit_steps=(4, 20))  # fmt: skip
        if self.backend == "splatfacto":
            defaults.update(num_scenes=(1, 2), base_iterations=(40, 1000))
        values = {k: getattr(self, k) if getattr(self, k) is not None else v[0 if self.quick else 1]
                  for k, v in defaults.items()}  # fmt: skip
        return Args(**{**asdict(self), **values})

    @property
    def edit_iterations(self) -> int:
        assert self.edit_passes is not None and self.num_views is not None and self.edit_every is not None
        return self.edit_passes * self.num_views * self.edit_every

    @property
    def record_every(self) -> int:
        assert self.num_views is not None and self.edit_every is not None
        return max(1, self.num_views * self.edit_every // self.curve_points_per_pass)


@dataclass(frozen=True)
class SceneChoice:
    """One scene of the benchmark and its instruction."""

    seed: int
    """Scene seed (``scenes.random_scene_spec(seed, 3)``)."""
    shape: str
    """The target object."""
    colour: str
    """The target's colour in the scene."""
    requested: str
    """The colour the instruction asks for (no object has it)."""
    confusable_with: str | None
    """Another object's colour within CONFUSABLE_DISTANCE of the requested one, if any."""


def _nearest_other(requested: str, colours: list[str]) -> tuple[str, float]:
    from relevance_nerf2nerf.scenes import COLOURS

    def distance(c: str) -> float:
        return float(torch.tensor(COLOURS[requested]).sub(torch.tensor(COLOURS[c])).norm())

    nearest = min(colours, key=distance)
    return nearest, distance(nearest)


def pick_scenes(num_scenes: int) -> list[SceneChoice]:
    """Scenes fixed by their seeds before any run: scene k targets ``SHAPE_ORDER[k % 4]`` (every shape once
    in the first four; seed 0's cube first, the demo's scene); the 5th and 6th (k = 4, 5) ask for a colour
    near another object's colour (``CONFUSABLE_DISTANCE``), the others for one far from every object's.
    Each takes the smallest unused seed whose scene holds the shape and offers such a colour (the first in
    ``REQUEST_ORDER`` no object has).

    Args:
        num_scenes (int): how many scenes.
    """
    from relevance_nerf2nerf.scenes import random_scene_spec

    picked: list[SceneChoice] = []
    used: set[int] = set()
    for k in range(num_scenes):
        shape, confusable = SHAPE_ORDER[k % len(SHAPE_ORDER)], k in (4, 5)
        seed = 0
        while True:
            if seed not in used:
                spec = random_scene_spec(seed, 3)
                colours = {o.shape: o.colour for o in spec.objects}
                if shape in colours:
                    others = [c for s, c in colours.items() if s != shape]
                    for requested in REQUEST_ORDER:
                        if requested in colours.values():
                            continue
                        near, distance = _nearest_other(requested, others)
                        if (distance < CONFUSABLE_DISTANCE) == confusable:
                            picked.append(SceneChoice(seed, shape, colours[shape], requested,
                                                      near if confusable else None))  # fmt: skip
                            break
                    if len(picked) == k + 1:
                        used.add(seed)
                        break
            seed += 1
    return picked


class EditRun(NamedTuple):
    """One scene-editing run of the benchmark."""

    name: str
    """The method's name in the results."""
    tau: float
    """Mask threshold."""
    freeze_below: float | None = None
    """splatfacto: Gaussians whose relevance stays below this are frozen (None: none)."""


def edit_runs(args: Args) -> list[EditRun]:
    """The scene-editing runs of ``args.backend``: nerfacto's at each of ``args.mask_thresholds``;
    splatfacto's at tau 0 (Instruct-GS2GS-style), at tau 0.5 and at tau 0.5 with the irrelevant Gaussians
    frozen.

    Args:
        args (Args): the settings.
    """
    if args.backend == "splatfacto":
        return [EditRun("IGS2GS-style (tau 0)", 0.0), EditRun(method_name(0.5), 0.5),
                EditRun(f"{method_name(0.5)}, frozen", 0.5, 0.5)]  # fmt: skip
    return [EditRun(method_name(tau), tau) for tau in args.mask_thresholds]


def _presets(backend: str):
    """(base preset, edit preset) of ``backend``'s CPU methods."""
    if backend == "splatfacto":
        from method_configs.relevance_splatfacto import relevance_splatfacto_tiny, splatfacto_tiny

        return splatfacto_tiny.config, relevance_splatfacto_tiny.config
    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny

    return nerfacto_tiny.config, relevance_nerf2nerf_tiny.config


def _trainer_config(base, scene: Path, output: Path, name: str, iterations: int, flags: tuple[str, ...] = ()):
    """In-process nerfstudio config of one run; ``flags`` are ns-train flags applied on top (as tyro does)."""
    from relevance_nerf2nerf._testing import in_process_config

    config = in_process_config(base, scene, output, "bench", name, iterations)
    if flags:
        config = tyro.cli(type(config), args=list(flags), default=config)
    config.steps_per_save = 10**6  # the final checkpoint only
    # exact poses and constant lighting, as relevance-demo trains generated scenes (its EXACT_CAPTURE_ARGS)
    config.pipeline.model.camera_optimizer.mode = "off"
    if hasattr(config.pipeline.model, "use_appearance_embedding"):  # nerfacto's; splatfacto has none
        config.pipeline.model.use_appearance_embedding = False
    return config


def edit_stage_flags(args: Args) -> tuple[str, ...]:
    """ns-train flags of every edit run: the resolved relevance IQR ratio. (The edit presets' learning rates
    already decay over each run's own length, as in relevance-demo's edit stage.)"""
    return ("--pipeline.relevance-iqr-ratio", str(args.relevance_iqr_ratio))


def _train(config, editor=None, record=None, record_every: int = 0):
    """Train a run in-process; ``record(step, pipeline)`` runs every ``record_every`` iterations (after the
    pipeline's own view update of that iteration). Returns the trainer."""
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    from relevance_nerf2nerf._testing import release_event_writers

    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)  # the method's trainer (RelevanceTrainer)
    with contextlib.redirect_stdout(io.StringIO()):  # nerfstudio's per-step console output
        trainer.setup()
        if editor is not None:
            trainer.pipeline.editor = editor
        if record is not None:
            trainer.callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    update_every_num_iters=record_every,
                    func=lambda step: record(step, trainer.pipeline),
                )
            )
        trainer.train()
    release_event_writers()
    return trainer


def held_out_scores(after, before, truth, shape: str, requested: str, relevance=None) -> dict:
    """Ground-truth figures of an edit on the held-out views (pooled, and per view with their spread).

    Args:
        after (torch.Tensor): edited views (V, H, W, 3).
        before (torch.Tensor): the same views unedited.
        truth (GroundTruth): their ground truth.
        shape (str): the target.
        requested (str): the colour the instruction asks for.
        relevance (torch.Tensor | None, default None): the run's rendered relevance (V, H, W), if any.
    """
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics

    m = ground_truth_metrics(after, before, truth, shape, requested, relevance, tau=0.5)
    keep = ("psnr_outside_object_after_vs_before", "ssim_outside_object_after_vs_before",
            "psnr_whole_image_after_vs_before", "object_colour_error_before", "object_colour_error_after",
            "object_nearest_colour_after", "non_target_colour_change", "max_non_target_colour_change",
            "relevance_iou_with_object", "per_view")  # fmt: skip
    scores = {k: m[k] for k in keep if k in m}
    scores["mean_non_target_colour_change"] = statistics.mean(m["non_target_colour_change"].values())
    scores["target_reached"] = bool(m["edit_hit"])
    return scores


def curve_point(after, before, truth, shape: str, requested: str, step: int, updates: int) -> dict:
    """One point of a run's curve: the target's colour error and the locality figures on the held-out views.

    Args:
        after: the run's renders at the held-out cameras (V, H, W, 3).
        before: the base's renders at the same cameras.
        truth: their ground truth.
        shape: the target.
        requested: the colour the instruction asks for.
        step: iterations done.
        updates: view updates done.
    """
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics

    m = ground_truth_metrics(after, before, truth, shape, requested)
    return {
        "step": step,
        "view_updates": updates,
        "target_colour_error": m["object_colour_error_after"],
        "target_reached": bool(m["edit_hit"]),
        "psnr_outside_target_db": m["psnr_outside_object_after_vs_before"],
        "mean_non_target_colour_change": statistics.mean(m["non_target_colour_change"].values()),
        "non_target_colour_change": m["non_target_colour_change"],
    }


def renormalised(relevance: torch.Tensor) -> torch.Tensor:
    """Per-view min-max renormalisation of rendered relevance, as the authors' code does before thresholding
    (a constant view stays 0).

    Args:
        relevance (torch.Tensor): (V, H, W) rendered relevance.
    """
    flat = relevance.reshape(relevance.shape[0], -1)
    low, high = flat.min(1).values, flat.max(1).values
    scale = (high - low).clamp(min=1e-6)
    return (relevance - low[:, None, None]) / scale[:, None, None]


def relevance_maps(
    editor, images: torch.Tensor, instruction: str, iqr_ratio: float, seed: int
) -> torch.Tensor:
    """The editor's 2D relevance maps (V, H, W) of ``images`` at ``iqr_ratio``.

    Args:
        editor (RelevanceEditor): the 2D editor.
        images (torch.Tensor): (V, H, W, 3) in [0, 1].
        instruction (str): the editing instruction.
        iqr_ratio (float): outlier fence of the maps.
        seed (int): view v draws its noise from seed ``seed * 1000 + v``.
    """
    maps = []
    for v, image in enumerate(images):
        generator = torch.Generator().manual_seed(seed * 1000 + v)
        result = editor.relevance(image.permute(2, 0, 1)[None], instruction, iqr_ratio=iqr_ratio,
                                  generator=generator)  # fmt: skip
        maps.append(result.pixel[0, 0])
    return torch.stack(maps)


def _load_images(scene: Path, names: list[str]) -> torch.Tensor:
    from relevance_nerf2nerf.diffusion.images import load_image

    return torch.stack([load_image(scene / "images" / n)[0].permute(1, 2, 0) for n in names])


def method_name(tau: float) -> str:
    """The benchmark's name of the scene-editing run at ``tau`` (0: Instruct-NeRF2NeRF).

    Args:
        tau (float): the run's mask threshold.
    """
    return "IN2N (tau 0)" if tau == 0 else f"ours tau={tau:g}"


def run_scene(args: Args, choice: SceneChoice, editor, workdir: Path, log=print) -> dict:
    """Every method on one scene; returns the scene's record.

    Args:
        args (Args): the resolved settings.
        choice (SceneChoice): the scene and its instruction.
        editor (RelevanceEditor): the 2D editor (per-frame IP2P, the 2D maps, the NeRF runs' updates).
        workdir (Path): scratch folder for the scene and its runs.
        log (callable, default print): progress messages.
    """
    from relevance_nerf2nerf.evaluation.ground_truth import load_ground_truth
    from relevance_nerf2nerf.evaluation.metrics import iou, psnr
    from relevance_nerf2nerf.evaluation.render import render_dataset
    from relevance_nerf2nerf.evaluation.strength import compare_at_matched_strength
    from relevance_nerf2nerf.scenes import generate_scene
    from relevance_nerf2nerf.scenes.points import add_point_cloud
    from relevance_nerf2nerf.toy_editor.data import instruction as make_instruction

    shape, new = choice.shape, choice.requested
    instruction = make_instruction(shape, new)
    assert args.image_size is not None
    info = generate_scene(workdir / f"scene{choice.seed}", seed=choice.seed, num_views=args.num_views,
                          num_held_out=args.num_held_out, width=args.image_size,
                          height=args.image_size)  # fmt: skip
    if args.backend == "splatfacto":  # the Gaussians start from the scene's surface points
        add_point_cloud(info.output_dir, num_points=args.num_points, seed=choice.seed)
    base_preset, edit_preset = _presets(args.backend)
    objects = ", ".join(f"{o.colour} {o.shape}" for o in info.spec.objects)
    record: dict = {**asdict(choice), "instruction": instruction, "objects": objects, "views": FORMAT,
                    "held_out_views": info.held_out_names, "methods": {}}  # fmt: skip
    runs = workdir / f"runs{choice.seed}"

    # 1. the base, trained once on the training views for every NeRF method; "before" at the held-out cameras
    start = time.perf_counter()
    log(f"seed {choice.seed}: base")
    base = _train(_trainer_config(base_preset, info.output_dir, runs, "base", args.base_iterations))
    before = render_dataset(base.pipeline, "eval")
    assert before.names == info.held_out_names
    truth = load_ground_truth(info.output_dir, before.names)
    record["base_seconds"] = round(time.perf_counter() - start, 1)
    record["base_psnr_held_out_vs_ground_truth"] = psnr(before.rgb, truth.images)

    # 2. per-frame IP2P: the 2D editor on each held-out ground-truth image, against that image
    start = time.perf_counter()
    log(f"seed {choice.seed}: {IP2P}")
    captures = _load_images(info.output_dir, info.held_out_names)
    edited = []
    for i, image in enumerate(captures):
        generator = torch.Generator().manual_seed(args.seed * 1000 + i)
        result = editor.edit(image.permute(2, 0, 1)[None], instruction, mask_threshold=0.0,
                             num_steps=args.edit_steps, generator=generator)  # fmt: skip
        edited.append(result.image[0].permute(1, 2, 0))
    record["methods"][IP2P] = {  # the captures' ground truth is the base renders': same cameras
        **held_out_scores(torch.stack(edited), captures, truth, shape, new),
        "seconds": round(time.perf_counter() - start, 1),
    }

    # 3. the 2D maps at the field's IQR ratio and at 1.5: held-out captures and training captures
    target = truth.masks[shape]
    train_captures = _load_images(info.output_dir, info.train_names)
    train_target = load_ground_truth(info.output_dir, info.train_names).masks[shape]
    ratios = sorted({float(args.relevance_iqr_ratio), PAPER_IQR_RATIO}, reverse=True)
    maps_2d = {}
    for ratio in ratios:
        held = relevance_maps(editor, captures, instruction, ratio, args.seed)
        trained = relevance_maps(editor, train_captures, instruction, ratio, args.seed)
        maps_2d[f"{ratio:g}"] = {"held_out_captures": iou(held >= 0.5, target),
                                 "training_captures": iou(trained >= 0.5, train_target)}  # fmt: skip
    ensemble: dict = {"iqr_ratio_field": args.relevance_iqr_ratio, "iqr_ratio_2d": args.relevance_iqr_ratio,
                      "iqr_ratio_2d_beside": PAPER_IQR_RATIO, "tau": 0.5, "maps_2d_iou": maps_2d,
                      "field_iou_held_out": {}}  # fmt: skip
    if args.measure_renormalisation:
        ensemble["field_iou_held_out_renormalised"] = {}

    # 4. scene editing from the same base, a curve recorded on the held-out cameras
    curves: dict[str, list[dict]] = {}
    for index, (name, tau, freeze_below) in enumerate(edit_runs(args)):
        log(f"seed {choice.seed}: {name}")
        start = time.perf_counter()
        config = _trainer_config(edit_preset, info.output_dir, runs, f"edit{index}", args.edit_iterations,
                                 edit_stage_flags(args))  # fmt: skip
        if freeze_below is not None:
            config.pipeline.model.freeze_below = freeze_below
        pipeline_config = config.pipeline
        pipeline_config.base_checkpoint = Path(base.base_dir)
        pipeline_config.instruction = instruction
        pipeline_config.mask_threshold = tau
        pipeline_config.edit_every = args.edit_every
        pipeline_config.edit_steps = args.edit_steps
        pipeline_config.seed = args.seed
        pipeline_config.export_dataset = False
        curve = [curve_point(before.rgb, before.rgb, truth, shape, new, 0, 0)]

        def record_point(step: int, pipeline, curve=curve) -> None:
            renders = render_dataset(pipeline, "eval")
            pipeline.train()  # render_dataset leaves the pipeline in eval mode
            updates = int(pipeline.datamanager.edits_done)
            curve.append(curve_point(renders.rgb, before.rgb, truth, shape, new, step + 1, updates))

        trainer = _train(config, editor, record_point, args.record_every)
        after = render_dataset(trainer.pipeline, "eval")
        if curve[-1]["step"] != args.edit_iterations:
            updates = int(trainer.pipeline.datamanager.edits_done)
            curve.append(curve_point(after.rgb, before.rgb, truth, shape, new, args.edit_iterations, updates))
        curves[name] = curve
        record["methods"][name] = {
            **held_out_scores(after.rgb, before.rgb, truth, shape, new, after.relevance),
            "view_updates": int(trainer.pipeline.datamanager.edits_done),
            "updates_per_view": int(trainer.pipeline.datamanager.edits_done) / args.num_views,
            "updates_per_view_first_reached": next(
                (p["view_updates"] / args.num_views for p in curve if p["target_reached"]), None
            ),
            "curve": curve,
            "seconds": round(time.perf_counter() - start, 1),
        }
        assert after.relevance is not None
        ensemble["field_iou_held_out"][name] = iou(after.relevance >= 0.5, target)
        if args.measure_renormalisation:
            ensemble["field_iou_held_out_renormalised"][name] = iou(
                renormalised(after.relevance) >= 0.5, target
            )
    record["ensemble"] = ensemble
    record["matched_strength"] = compare_at_matched_strength(curves)
    return record


def scene_line(scene: dict) -> str:
    """One line per finished scene: each method's end figures and whether it reached the colour.

    Args:
        scene (dict): a record of :func:`run_scene`.
    """
    parts = []
    for method, r in scene["methods"].items():
        reached = " reached" if r["target_reached"] else ""
        psnr, change = r["psnr_outside_object_after_vs_before"], r["mean_non_target_colour_change"]
        error = r["object_colour_error_after"]
        parts.append(f"{method}: err {error:.3f}{reached}, {psnr:.2f} dB, nt {change:.3f}")
    return f"seed {scene['seed']} {scene['instruction']!r}: " + "; ".join(parts)


def _mean(values) -> float | None:
    kept = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.mean(kept) if kept else None


def summarise(scenes: list[dict]) -> dict:
    """Per method over scenes: the end figures (means, with the spread of the per-scene values), how many
    scenes reached the requested colour, the matched-strength figures (mean over scenes, each scene at its own
    matched level) and the ensemble IoUs.

    Args:
        scenes (list[dict]): the scene records of :func:`run_scene`.
    """
    summary: dict = {"methods": {}}
    for method in scenes[0]["methods"]:
        rows = [s["methods"][method] for s in scenes]
        psnrs = [r["psnr_outside_object_after_vs_before"] for r in rows]
        entry = {
            "psnr_outside_target_db": _mean(psnrs),
            "psnr_outside_target_db_std_over_scenes": statistics.stdev(psnrs) if len(psnrs) > 1 else 0.0,
            "psnr_outside_target_db_mean_of_per_view_means": _mean(
                r["per_view"]["psnr_outside_object"]["mean"] for r in rows
            ),
            "ssim_outside_target": _mean(r["ssim_outside_object_after_vs_before"] for r in rows),
            "edit_psnr_whole_image_db": _mean(r["psnr_whole_image_after_vs_before"] for r in rows),
            "mean_non_target_colour_change": _mean(r["mean_non_target_colour_change"] for r in rows),
            "max_non_target_colour_change": max(r["max_non_target_colour_change"] for r in rows),
            "target_colour_error_after": _mean(r["object_colour_error_after"] for r in rows),
            "target_reached": sum(bool(r["target_reached"]) for r in rows),
            "updates_per_view_first_reached": [r.get("updates_per_view_first_reached") for r in rows],
            "target_reached_scenes": [
                s["seed"] for s, r in zip(scenes, rows, strict=True) if r["target_reached"]
            ],
            "scenes": len(rows),
            "seconds": _mean(r["seconds"] for r in rows),
        }
        matched = [s["matched_strength"]["methods"].get(method) for s in scenes if "matched_strength" in s]
        matched = [m for m in matched if m is not None]
        if matched:
            entry["matched_strength"] = {
                "target_colour_error": _mean(m["target_colour_error"] for m in matched),
                "psnr_outside_target_db": _mean(m["psnr_outside_target_db"] for m in matched),
                "mean_non_target_colour_change": _mean(m["mean_non_target_colour_change"] for m in matched),
            }
        summary["methods"][method] = entry
    ratio = scenes[0]["ensemble"]["iqr_ratio_field"]
    ensemble: dict = {"iqr_ratio_field": ratio, "iqr_ratio_2d": ratio, "tau": 0.5, "maps_2d_iou": {},
                      "field_iou_held_out": {}}  # fmt: skip
    for key in scenes[0]["ensemble"]["maps_2d_iou"]:
        ensemble["maps_2d_iou"][key] = {
            views: _mean(s["ensemble"]["maps_2d_iou"][key][views] for s in scenes)
            for views in ("held_out_captures", "training_captures")
        }
    for field in ("field_iou_held_out", "field_iou_held_out_renormalised"):
        if field in scenes[0]["ensemble"]:
            ensemble[field] = {
                m: _mean(s["ensemble"][field][m] for s in scenes) for m in scenes[0]["ensemble"][field]
            }
    summary["ensemble"] = ensemble
    summary["matched_levels"] = [s["matched_strength"]["target_colour_error"] for s in scenes]
    return summary


def write_plot(scenes: list[dict], path: Path) -> Path:
    """The curves plot: every NeRF method's curve per scene and pooled, per-frame IP2P as one point.

    Args:
        scenes (list[dict]): the scene records of :func:`run_scene`.
        path (Path): the PNG to write (whole or not at all).
    """
    from relevance_nerf2nerf.evaluation.strength import plot_curves

    def label(scene: dict) -> str:
        return f"{scene['instruction']} (seed {scene['seed']})"

    curves = {label(s): {m: r["curve"] for m, r in s["methods"].items() if "curve" in r} for s in scenes}
    points = {
        label(s): {IP2P: {"target_colour_error": r["object_colour_error_after"],
                          "psnr_outside_target_db": r["psnr_outside_object_after_vs_before"],
                          "mean_non_target_colour_change": r["mean_non_target_colour_change"]}}
        for s in scenes
        for r in [s["methods"][IP2P]]
    }  # fmt: skip
    from relevance_nerf2nerf.outputs import atomic_write

    return atomic_write(path, lambda temporary: plot_curves(curves, temporary, points))


def _scene_worker(args: Args, choice: SceneChoice, editor_model: str, workdir: str) -> dict:
    """One scene in a worker process (its own editor, ``args.threads`` threads); see :func:`run_scene`."""
    from relevance_nerf2nerf.diffusion.editor import load_editor

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    return run_scene(args, choice, load_editor(editor_model), Path(workdir), log=lambda _: None)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (results name no machine's folders)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def results_key(args: Args) -> str:
    """``quick`` / ``full`` when only --quick (or nothing) sets the size, else ``custom``; with
    ``--backend splatfacto`` prefixed ``splatfacto-`` (``splatfacto`` alone for the default size).

    Args:
        args (Args): the settings as given (not resolved).
    """
    size = ("num_scenes", "num_views", "num_held_out", "image_size", "base_iterations", "edit_passes",
            "edit_every", "edit_steps", "curve_points_per_pass", "num_points")  # fmt: skip
    if args.backend == "nerfacto":
        size += ("mask_thresholds",)
    custom = any(getattr(args, k) != getattr(Args(), k) for k in size)
    key = "custom" if custom else "quick" if args.quick else "full"
    if args.backend == "splatfacto":
        return "splatfacto" if key == "full" else f"splatfacto-{key}"
    return key


def write_results(key: str, result: dict, path: Path = RESULTS) -> None:
    """Merge ``result`` into ``path`` under ``key``, dropping entries of older formats (no ``views``).

    Args:
        key (str): the entry's name (``full``, ``quick``, ``custom``).
        result (dict): the entry.
        path (Path, default RESULTS): the JSON file (written whole or not at all).
    """
    from relevance_nerf2nerf.outputs import write_json

    results = json.loads(path.read_text()) if path.exists() else {}
    results = {k: v for k, v in results.items() if isinstance(v, dict) and v.get("views") == FORMAT}
    results[key] = result
    write_json(path, results)


def main(args: Args) -> dict:
    """Run the benchmark, write the JSON entry and the plot, print a summary; returns the entry.

    Args:
        args (Args): the settings (sizes resolved here).
    """
    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
    from relevance_nerf2nerf.cli.demo import default_iqr_ratio
    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.diffusion.relevance import check_iqr_ratio
    from relevance_nerf2nerf.outputs import check_output_file

    check_output_file(args.results, "the results file", "--results")  # before any work
    key = results_key(args)
    args = args.resolved()
    warnings.filterwarnings("ignore")  # nerfstudio's and torch's deprecation notes, once per camera
    torch.set_num_threads(args.threads)
    editor_model = args.editor_model or str(TOY_EDITOR_DIR)
    if args.relevance_iqr_ratio is None:
        args = replace(args, relevance_iqr_ratio=default_iqr_ratio(editor_model))
    check_iqr_ratio(args.relevance_iqr_ratio, "--relevance-iqr-ratio")
    choices = pick_scenes(args.num_scenes)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
                futures = [pool.submit(_scene_worker, args, c, editor_model, tmp) for c in choices]
                scenes = [f.result() for f in futures]
        else:
            editor = load_editor(editor_model)
            scenes = []
            for choice in choices:
                scenes.append(run_scene(args, choice, editor, Path(tmp)))
                print(scene_line(scenes[-1]), flush=True)
    summary = summarise(scenes)
    plot_path = args.results.with_name("localisation.png" if key == "full" else f"localisation_{key}.png")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    write_plot(scenes, plot_path)
    settings = {**asdict(args), "results": _shown(args.results), "edit_iterations": args.edit_iterations,
                "editor_model": _shown(Path(editor_model)) if Path(editor_model).exists() else editor_model,
                "record_every": args.record_every}  # fmt: skip
    result = {
        "views": FORMAT,
        "iqr_ratio_2d": args.relevance_iqr_ratio,
        "iqr_ratio_field": args.relevance_iqr_ratio,
        "iqr_ratio_2d_beside": PAPER_IQR_RATIO,
        "settings": settings,
        "machine": f"{platform.machine()} CPU, {args.workers} worker(s) x {args.threads} thread(s)",
        "total_seconds": round(time.perf_counter() - start, 1),
        "plot": _shown(plot_path),
        "summary": summary,
        "scenes": scenes,
    }
    write_results(key, result, args.results)
    for method, row in summary["methods"].items():
        matched = row.get("matched_strength", {})
        print(f"{method:>16}: PSNR outside {row['psnr_outside_target_db']:.2f} dB, non-target "
              f"{row['mean_non_target_colour_change']:.3f}, reached {row['target_reached']}/{row['scenes']}"
              + (f"; matched: {matched['psnr_outside_target_db']:.2f} dB, "
                 f"{matched['mean_non_target_colour_change']:.3f}" if matched else ""))  # fmt: skip
    print(f"ensemble (IoU, tau 0.5): {json.dumps(summary['ensemble'])}")
    where = f"results: {_shown(args.results)} [{key}], plot: {result['plot']}"
    print(f"{result['total_seconds']:.0f} s; {where}")
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
