"""Benchmark: seconds per training iteration of the Gaussian-splat methods at the demo's size, on the CPU's
pure-torch reference rasterizer (or gsplat on CUDA).

A generated scene (``--num-views`` views of ``--size`` px, the demo's defaults) gets a point cloud of
``--num-points`` surface points; ``splatfacto-tiny`` trains a base on it for ``--base-iterations`` (its
densification runs as in the demo), then ``relevance-splatfacto-tiny`` continues from that base with every
view's relevance map present (so the relevance loss and its render run every iteration) and one update at
step 0 that keeps the image (the editor's cost is ``bench_scene_edit.py``'s). Both stages are timed over
their last ``--timed-iterations`` iterations (forward, backward, optimizer step, densification), in wall
time and in process CPU time (one torch thread: one core's time, meaningful on a shared machine); the
Gaussian count at each stage is recorded.
Target: at most 0.3 s per edit iteration at the demo's size on one core.

Results are merged into ``benchmarks/results/splat_speed.json`` under ``<device>-<size>px``.

    python benchmarks/bench_splat_speed.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import tyro
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

from method_configs.relevance_splatfacto import relevance_splatfacto_tiny, splatfacto_tiny
from relevance_nerf2nerf._testing import in_process_config, release_event_writers
from relevance_nerf2nerf.diffusion.editor import EditResult
from relevance_nerf2nerf.outputs import atomic_write
from relevance_nerf2nerf.scenes import generate_scene
from relevance_nerf2nerf.scenes.points import add_point_cloud

RESULTS = Path(__file__).parent / "results" / "splat_speed.json"


@dataclass
class Args:
    """Splat training speed at the demo's size."""

    size: int = 64
    """View width and height in pixels (the demo's default)."""
    num_views: int = 24
    """Views of the generated scene (the demo's default)."""
    num_points: int = 2000
    """Points of the scene's point cloud, the Gaussians the base starts from."""
    base_iterations: int = 1000
    """Iterations of the base (splatfacto-tiny densifies every 100 steps from step 300, as in the demo)."""
    edit_iterations: int = 60
    """Iterations of the edit stage."""
    timed_iterations: int = 40
    """Iterations timed at the end of each stage."""
    device: str = "cpu"
    """Training device (cpu: the reference rasterizer; cuda: gsplat)."""
    threads: int = 1
    """torch threads (1: the process CPU time is one core's time per iteration, whatever else runs)."""
    seed: int = 0
    """Seed of the scene, its point cloud and training."""
    output: Path = RESULTS
    """JSON file the record is merged into."""


class IterationTimer:
    """Wall time and process CPU time of each training iteration (from before the iteration to after it).

    On a shared machine the wall time includes waiting for a core; with one torch thread the process CPU
    time is what the iteration costs one core."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def callbacks(self) -> list[TrainingCallback]:
        def before(step: int) -> None:
            self.start = (time.perf_counter(), time.process_time())

        def after(step: int) -> None:
            assert self.start is not None
            self.seconds.append(time.perf_counter() - self.start[0])
            self.cpu_seconds.append(time.process_time() - self.start[1])

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after),
        ]


class KeepingEditor:
    """Stands in for the editor: an update keeps the view's image (the editor's cost is not measured here)."""

    def edit(self, image, instruction, *, relevance, mask_threshold, **_):
        return EditResult(image=image, relevance=relevance, mask=relevance >= mask_threshold)


def train(config, timer: IterationTimer, prepare=None):
    """Set up and train ``config`` in-process with ``timer`` on every iteration; returns the trainer."""
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    if prepare is not None:
        prepare(trainer)
    trainer.callbacks = timer.callbacks()[:1] + trainer.callbacks + timer.callbacks()[1:]
    trainer.train()
    release_event_writers()
    return trainer


def main(args: Args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scene = generate_scene(
            root / "scene", seed=args.seed, num_views=args.num_views, width=args.size, height=args.size
        ).output_dir
        add_point_cloud(scene, num_points=args.num_points, seed=args.seed)
        stages = {}
        base_config = in_process_config(
            splatfacto_tiny.config, scene, root, "bench", "base", args.base_iterations
        )
        base_config.machine.device_type = args.device
        base_timer = IterationTimer()
        base = train(base_config, base_timer)
        stages["base"] = (base_timer, base.pipeline.model.num_points)

        edit_config = in_process_config(
            relevance_splatfacto_tiny.config, scene, root, "bench", "edit", args.edit_iterations
        )
        edit_config.machine.device_type = args.device
        pipeline = edit_config.pipeline
        pipeline.instruction, pipeline.base_checkpoint = "make the cube blue", Path(base.base_dir)
        pipeline.edit_every, pipeline.export_dataset = (
            10**9,
            False,
        )  # one update (step 0): the model's cost only

        def with_maps(trainer) -> None:
            trainer.pipeline.editor = KeepingEditor()  # the update at step 0 only
            datamanager = trainer.pipeline.datamanager
            generator = torch.Generator().manual_seed(args.seed)
            for index in range(datamanager.num_views):
                datamanager.set_relevance(index, torch.rand(1, 1, args.size, args.size, generator=generator))

        edit_timer = IterationTimer()
        edit = train(edit_config, edit_timer, prepare=with_maps)
        stages["edit"] = (edit_timer, edit.pipeline.model.num_points)

    record = {"args": {k: v for k, v in asdict(args).items() if k != "output"}}
    for name, (timer, gaussians) in stages.items():
        wall, cpu = (
            sorted(values[-args.timed_iterations :]) for values in (timer.seconds, timer.cpu_seconds)
        )
        record[name] = {
            "wall_seconds_per_iteration_median": wall[len(wall) // 2],
            "cpu_seconds_per_iteration_median": cpu[len(cpu) // 2],
            "cpu_seconds_per_iteration_mean": sum(cpu) / len(cpu),
            "gaussians_at_end": gaussians,
        }
    record["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    record["target_seconds_per_edit_iteration"] = 0.3
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[f"{args.device}-{args.size}px"] = record
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.output, lambda path: path.write_text(json.dumps(results, indent=2) + "\n"))
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main(tyro.cli(Args))
