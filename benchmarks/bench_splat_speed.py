"""Benchmark: seconds per training iteration and per view update of the Gaussian-splat methods, on the CPU's
pure-torch reference rasterizer at the demo's size (``--preset tiny``) or with gsplat on a GPU at full size
(``--preset full``).

A generated scene (``--num-views`` views of ``--size`` px) gets a point cloud of ``--num-points`` surface
points, the Gaussians the base starts from. Two stages are trained in-process:

- base: ``splatfacto-tiny`` (tiny) or nerfstudio's ``splatfacto`` (full; its point cloud read by
  ``PointCloudDataParser``, as ``relevance-splatfacto`` reads it) for ``--base-iterations``;
- edit: ``relevance-splatfacto-tiny`` / ``relevance-splatfacto`` continues from that base with every view's
  relevance map present (so the relevance loss and its render run every iteration) and one update at step 0
  that keeps the image (:class:`KeepingEditor`: the editor's own cost is ``bench_crop.py``'s).

With ``--preset full`` the base only has to exist: a short base (at splatfacto's reduced resolution of its
first steps) is enough, and the edit continues as from a finished splatfacto run (its step count, so the edit
trains at full resolution with every SH band and no densification, as an edit of a real capture does); the
Gaussian count is then ``--num-points``.

Both stages are timed over their last ``--timed-iterations`` iterations (forward, backward, optimizer step,
densification), in wall time (synchronised on CUDA) and in process CPU time (one torch thread: one core's
time, meaningful on a shared machine); the Gaussian count and training resolution at the end of each stage are
recorded. Then ``--timed-updates`` pipeline view updates (``edit_view``: the render of the next view due at
its camera, the mask, the editor call of the stand-in, the bookkeeping) are timed after one untimed update. On
CUDA each stage (base, edit, updates) also records its peak memory (``torch.cuda.max_memory_allocated``, reset
when the stage starts). Target (tiny): at most 0.3 s per edit iteration at the demo's size on one core.

Results are merged into ``benchmarks/results/splat_speed.json`` under ``<device>-<size>px`` (tiny) or
``<device>-<size>px-full`` (full).

    python benchmarks/bench_splat_speed.py                                      # CPU, the demo's size
    python benchmarks/bench_splat_speed.py --preset full --device cuda --size 512   # a CUDA machine
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.trainer import TrainerConfig

from method_configs.relevance_splatfacto import (
    relevance_splatfacto,
    relevance_splatfacto_tiny,
    splatfacto_tiny,
)
from relevance_nerf2nerf._testing import in_process_config, release_event_writers
from relevance_nerf2nerf.diffusion.editor import EditResult
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.nerf.dataparser import PointCloudDataParserConfig
from relevance_nerf2nerf.nerf.relevance import without_lpips_download
from relevance_nerf2nerf.outputs import write_json
from relevance_nerf2nerf.scenes import generate_scene
from relevance_nerf2nerf.scenes.points import add_point_cloud

RESULTS = Path(__file__).parent / "results" / "splat_speed.json"


@dataclass
class Args:
    """Splat training and update speed."""

    preset: Literal["tiny", "full"] = "tiny"
    """tiny: splatfacto-tiny / relevance-splatfacto-tiny (any device, the reference rasterizer); full:
    nerfstudio's splatfacto / relevance-splatfacto (CUDA only: gsplat)."""
    size: int = 64
    """View width and height in pixels (the demo's default)."""
    num_views: int = 24
    """Views of the generated scene (the demo's default)."""
    supersample: int = 2
    """Anti-aliasing rays per pixel side of the generated views (the generator's default)."""
    num_points: int = 2000
    """Points of the scene's point cloud, the Gaussians the base starts from."""
    base_iterations: int = 1000
    """Iterations of the base (splatfacto-tiny densifies every 100 steps from step 300, as in the demo)."""
    edit_iterations: int = 60
    """Iterations of the edit stage."""
    timed_iterations: int = 40
    """Iterations timed at the end of each stage."""
    timed_updates: int = 3
    """View updates timed after the edit stage (after one untimed update)."""
    device: str = "cpu"
    """Training device (cpu: the reference rasterizer; cuda: gsplat with --preset full)."""
    threads: int = 1
    """torch threads (1: the process CPU time is one core's time per iteration, whatever else runs)."""
    seed: int = 0
    """Seed of the scene, its point cloud and training."""
    output: Path = RESULTS
    """JSON file the record is merged into."""


def record_key(device: str, size: int, preset: str) -> str:
    """The key a record is merged under in the results file: ``<device>-<size>px``, plus ``-full`` for the
    full presets (so a GPU run of each preset keeps its own record).

    Args:
        device (str): the training device, as passed (``cpu``, ``cuda``).
        size (int): the view side in pixels.
        preset (str): ``tiny`` or ``full``.
    """
    return f"{device}-{size}px" + ("-full" if preset == "full" else "")


def check_args(args: Args) -> None:
    """Refuse settings the benchmark cannot run, before any work (one line that says what to do).

    Args:
        args (Args): the parsed command line.
    """
    cuda = args.device.startswith("cuda")
    if args.preset == "full" and not cuda:
        raise InvalidInputError(
            "--preset full trains nerfstudio's splatfacto, whose rasterizer (gsplat) runs on CUDA only: "
            "use --device cuda, or --preset tiny on a CPU"
        )
    if cuda and not torch.cuda.is_available():
        raise InvalidInputError(
            f"--device {args.device}: no CUDA device here; use --device cpu --preset tiny"
        )
    counts = {
        "--size": args.size,
        "--num-views": args.num_views,
        "--supersample": args.supersample,
        "--timed-iterations": args.timed_iterations,
        "--timed-updates": args.timed_updates,
        "--threads": args.threads,
    }
    for flag, value in counts.items():
        if value < 1:
            raise InvalidInputError(f"{flag} must be at least 1, got {value}")
    if args.timed_iterations > min(args.base_iterations, args.edit_iterations):
        raise InvalidInputError(
            f"--timed-iterations {args.timed_iterations} is more than a stage has: use at most "
            f"min(--base-iterations, --edit-iterations) = {min(args.base_iterations, args.edit_iterations)}"
        )


def presets(preset: str) -> tuple[TrainerConfig, TrainerConfig]:
    """The base and edit methods' configs of ``preset``.

    Args:
        preset (str): ``tiny`` (splatfacto-tiny, relevance-splatfacto-tiny) or ``full`` (nerfstudio's
            splatfacto reading its point cloud without open3d, relevance-splatfacto).
    """
    if preset == "tiny":
        return splatfacto_tiny.config, relevance_splatfacto_tiny.config
    from nerfstudio.configs.method_configs import method_configs

    base = copy.deepcopy(method_configs["splatfacto"])
    base.pipeline.datamanager.dataparser = PointCloudDataParserConfig()
    return base, relevance_splatfacto.config


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    """Peak GPU memory allocated since the last reset, in MiB (None off CUDA)."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


class IterationTimer:
    """Wall time and process CPU time of each training iteration (from before the iteration to after it).

    On a shared machine the wall time includes waiting for a core; with one torch thread the process CPU
    time is what the iteration costs one core. On CUDA the device is synchronised at both ends, so the wall
    time includes the kernels the iteration queued.

    Args:
        device (str, default "cpu"): the training device.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.start: tuple[float, float] | None = None
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def callbacks(self) -> list[TrainingCallback]:
        """A callback that starts the clocks before each iteration and one that reads them after it."""

        def before(step: int) -> None:
            _synchronize(self.device)
            self.start = (time.perf_counter(), time.process_time())

        def after(step: int) -> None:
            assert self.start is not None
            _synchronize(self.device)
            self.seconds.append(time.perf_counter() - self.start[0])
            self.cpu_seconds.append(time.process_time() - self.start[1])

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after),
        ]

    def summary(self, last: int) -> dict:
        """Median wall and CPU seconds and mean CPU seconds of the last ``last`` iterations.

        Args:
            last (int): how many of the latest iterations count.
        """
        wall, cpu = (sorted(values[-last:]) for values in (self.seconds, self.cpu_seconds))
        return {
            "wall_seconds_per_iteration_median": wall[len(wall) // 2],
            "cpu_seconds_per_iteration_median": cpu[len(cpu) // 2],
            "cpu_seconds_per_iteration_mean": sum(cpu) / len(cpu),
        }


class KeepingEditor:
    """Stands in for the editor: an update keeps the view's image (the editor's cost is not measured here)."""

    def edit(self, image, instruction, *, relevance, mask_threshold, **_):
        """The image unchanged, with the mask the threshold gives.

        Args:
            image (Tensor): the renders (B, 3, H, W).
            instruction (str): unused.
            relevance (Tensor): the relevance maps (B, 1, H, W).
            mask_threshold (float): tau.
            **_ (Any): the editor's other options, unused.
        """
        return EditResult(image=image, relevance=relevance, mask=relevance >= mask_threshold)


def train(config, timer: IterationTimer, prepare=None):
    """Set up and train ``config`` in-process with ``timer`` on every iteration; returns the trainer.

    Args:
        config (TrainerConfig): the run's config (``in_process_config``).
        timer (IterationTimer): times every iteration.
        prepare (Callable[[Trainer], None] | None, default None): called after set-up, before training.
    """
    trainer = config.setup(local_rank=0, world_size=1)
    with without_lpips_download():  # nerfstudio's splatfacto builds LPIPS, which downloads AlexNet
        trainer.setup()
    if prepare is not None:
        prepare(trainer)
    trainer.callbacks = timer.callbacks()[:1] + trainer.callbacks + timer.callbacks()[1:]
    trainer.train()
    release_event_writers()
    return trainer


def stage_record(trainer, timer: IterationTimer, args: Args, peak_mib: float | None) -> dict:
    """A trained stage's timings, Gaussian count, training resolution and peak memory.

    Args:
        trainer (Trainer): the stage's trained trainer.
        timer (IterationTimer): the stage's timer.
        args (Args): the benchmark's settings.
        peak_mib (float | None): the stage's peak GPU memory in MiB (None off CUDA).
    """
    model = trainer.pipeline.model
    # splatfacto's resolution schedule at the model's last step (what it trains at, in either mode)
    downscale = 2 ** max(model.config.num_downscales - model.step // model.config.resolution_schedule, 0)
    return {
        **timer.summary(args.timed_iterations),
        "gaussians_at_end": model.num_points,
        "training_px_at_end": args.size // downscale,
        "peak_gpu_mib": peak_mib,
    }


def time_updates(pipeline, args: Args) -> dict:
    """Seconds of ``args.timed_updates`` pipeline view updates (the next view due each time) after one untimed
    update, and their peak memory.

    Args:
        pipeline (RelevanceNerf2NerfPipeline): a trained edit's pipeline with :class:`KeepingEditor`.
        args (Args): the benchmark's settings.
    """
    _reset_peak(args.device)
    seconds, cpu_seconds = [], []
    for k in range(args.timed_updates + 1):
        _synchronize(args.device)
        start = (time.perf_counter(), time.process_time())
        pipeline.edit_view()
        _synchronize(args.device)
        if k > 0:  # the first one warms up
            seconds.append(time.perf_counter() - start[0])
            cpu_seconds.append(time.process_time() - start[1])
    return {
        "updates": args.timed_updates,
        "seconds_per_update_median": statistics.median(seconds),
        "cpu_seconds_per_update_median": statistics.median(cpu_seconds),
        "view_pixels": list(pipeline.datamanager.edited_images.shape[1:3]),
        "peak_gpu_mib": _peak_mib(args.device),
    }


def main(args: Args) -> dict:
    """Run the benchmark, merge its record into ``args.output`` and return the record.

    Args:
        args (Args): the parsed command line.
    """
    check_args(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base_method, edit_method = presets(args.preset)
    record: dict = {"preset": args.preset, "args": {k: v for k, v in asdict(args).items() if k != "output"}}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scene = generate_scene(
            root / "scene",
            seed=args.seed,
            num_views=args.num_views,
            width=args.size,
            height=args.size,
            supersample=args.supersample,
        ).output_dir
        add_point_cloud(scene, num_points=args.num_points, seed=args.seed)
        base_config = in_process_config(base_method, scene, root, "bench", "base", args.base_iterations)
        base_config.machine.device_type = args.device
        base_timer = IterationTimer(args.device)
        _reset_peak(args.device)
        base = train(base_config, base_timer)
        record["base"] = stage_record(base, base_timer, args, _peak_mib(args.device))

        edit_config = in_process_config(edit_method, scene, root, "bench", "edit", args.edit_iterations)
        edit_config.machine.device_type = args.device
        pipeline = edit_config.pipeline
        pipeline.instruction, pipeline.base_checkpoint = "make the cube blue", Path(base.base_dir)
        pipeline.edit_every, pipeline.export_dataset = 10**9, False  # one update (step 0): the model's cost

        def with_maps(trainer) -> None:
            trainer.pipeline.editor = KeepingEditor()
            if args.preset == "full":  # continue as from a finished splatfacto run (see the module docstring)
                trainer.pipeline.model.start_from_base(base_method.max_num_iterations - 1)
            datamanager = trainer.pipeline.datamanager
            generator = torch.Generator().manual_seed(args.seed)
            for index in range(datamanager.num_views):
                datamanager.set_relevance(index, torch.rand(1, 1, args.size, args.size, generator=generator))

        edit_timer = IterationTimer(args.device)
        _reset_peak(args.device)
        edit = train(edit_config, edit_timer, prepare=with_maps)
        record["edit"] = stage_record(edit, edit_timer, args, _peak_mib(args.device))
        record["update"] = time_updates(edit.pipeline, args)

    record["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    if args.device.startswith("cuda"):
        record["machine"]["gpu"] = torch.cuda.get_device_name()
    if args.preset == "tiny":
        record["target_seconds_per_edit_iteration"] = 0.3
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[record_key(args.device, args.size, args.preset)] = record
    write_json(args.output, results)
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except RelevanceError as err:
        print(f"bench_splat_speed: error: {err}", file=sys.stderr)
        sys.exit(2)
