"""Benchmark: the demo's edit on Gaussian splats, on the CPU, measured against the scene's ground truth.

The demo's scene (seed 0: an orange cone, a red cube and a purple sphere; 24 views of 64 px) gets a point
cloud of its surfaces; ``ns-train splatfacto-tiny`` trains the base, then
``ns-train relevance-splatfacto-tiny`` edits it with the bundled toy editor ("make the cube blue") in up to
three variants from the same base, seed and cameras:

- ``ours (tau 0.5)``: relevance-guided updates;
- ``ours, frozen (tau 0.5)``: the same, with the Gaussians whose relevance is below tau frozen
  (``--pipeline.model.freeze-below 0.5``);
- ``in2n-style (tau 0)``: every pixel of every update is edited (Instruct-GS2GS-style).

Every view is rendered before and after each edit and measured as the demo measures (``ground_truth_metrics``:
the cube's colour change and hit, the largest colour change of the other objects, PSNR outside the cube).
Results go to ``benchmarks/results/splat_demo.json``.

    python benchmarks/bench_splat_demo.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import tyro

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.outputs import check_new_output_dir, recorded_path, write_json
from relevance_nerf2nerf.scenes import generate_scene
from relevance_nerf2nerf.scenes.points import add_point_cloud

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "splat_demo.json"
METHODS = {"splatfacto-tiny": "splatfacto_tiny", "relevance-splatfacto-tiny": "relevance_splatfacto_tiny"}
VARIANTS = {
    "ours (tau 0.5)": ["--pipeline.mask-threshold", "0.5"],
    "ours, frozen (tau 0.5)": ["--pipeline.mask-threshold", "0.5", "--pipeline.model.freeze-below", "0.5"],
    "in2n-style (tau 0)": ["--pipeline.mask-threshold", "0"],
}


@dataclass
class Args:
    """The demo's splat edit, measured."""

    output_dir: Path = Path("splat_demo_outputs")
    """A new folder for the scene, runs and logs (refused if it exists)."""
    base_iterations: int = 1500
    """Iterations of the splatfacto-tiny base."""
    edit_iterations: int = 300
    """Iterations of each edit."""
    num_points: int = 2000
    """Points of the scene's point cloud."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Which edit variants to run (names of VARIANTS)."""
    instruction: str = "make the cube blue"
    """The instruction (the toy editor knows "make the <shape> <colour>")."""
    seed: int = 0
    """Seed of the scene, its point cloud and the edits."""
    results: Path = RESULTS
    """JSON file the record is merged into."""
    base_run: Path | None = None
    """An existing splatfacto-tiny run folder of a generated scene to edit (skips the scene and the base)."""


def register_methods() -> None:
    """Name the splat methods for nerfstudio through ``NERFSTUDIO_METHOD_CONFIGS`` when the install has no
    entry points for them (``ns-train`` and nerfstudio's ``eval_setup`` look methods up by name)."""
    if not set(METHODS) <= set(entry_points(group="nerfstudio.method_configs").names):
        os.environ["NERFSTUDIO_METHOD_CONFIGS"] = ",".join(
            f"{name}=method_configs.relevance_splatfacto:{attr}" for name, attr in METHODS.items()
        )


def ns_train(args: list[str], log: Path) -> float:
    """Run ``ns-train`` with ``args``, its output in ``log``; returns its wall time in seconds."""
    start = time.perf_counter()
    with log.open("w") as stream:
        command = [str(Path(sys.executable).parent / "ns-train"), *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"ns-train failed, see {log}")
    return time.perf_counter() - start


def trained_data(config: Path) -> Path:
    """The dataset folder of a run, from its ``config.yml``.

    Args:
        config (Path): the run's ``config.yml``.
    """
    import yaml

    return Path(yaml.load(config.read_text(), Loader=yaml.Loader).pipeline.datamanager.data)


def _save(path: Path, key: str, record: dict) -> None:
    """Merge ``record`` into the results file ``path`` under ``key`` (written whole)."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = record
    write_json(path, results)


def main(args: Args) -> dict:
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth, target_of
    from relevance_nerf2nerf.evaluation.render import load_pipeline, render_dataset

    register_methods()
    check_new_output_dir(args.output_dir)
    runs, logs = args.output_dir / "runs", args.output_dir / "logs"
    logs.mkdir(parents=True)
    if args.base_run is None:
        scene = generate_scene(args.output_dir / "scene", seed=args.seed).output_dir
        add_point_cloud(scene, num_points=args.num_points, seed=args.seed)
        base_dir = runs / "demo" / "splatfacto-tiny" / "base"
        base_args = ["splatfacto-tiny", "--data", str(scene), "--output-dir", str(runs), "--experiment-name",
                     "demo", "--vis", "tensorboard", "--timestamp", "base",
                     "--max-num-iterations", str(args.base_iterations)]  # fmt: skip
        seconds = {"base": ns_train(base_args, logs / "base.log")}
    else:
        base_dir, seconds = args.base_run, {}
        scene = trained_data(base_dir / "config.yml")
    common = [
        "--data",
        str(scene),
        "--output-dir",
        str(runs),
        "--experiment-name",
        "demo",
        "--vis",
        "tensorboard",
    ]
    base = load_pipeline(base_dir / "config.yml")
    before = render_dataset(base)
    truth = load_ground_truth(scene, before.names)
    target = target_of(args.instruction, list(truth.masks))
    arguments = {k: recorded_path(v, REPO) if isinstance(v, Path) else v for k, v in asdict(args).items()
                 if k != "results"}  # fmt: skip
    record: dict = {"args": arguments}
    record["base_gaussians"] = int(base.model.num_points)
    for index, name in enumerate(args.variants):
        timestamp = f"edit{index}"
        seconds[name] = ns_train([
            "relevance-splatfacto-tiny", *common, "--timestamp", timestamp,
            "--max-num-iterations", str(args.edit_iterations), "--pipeline.base-checkpoint", str(base_dir),
            "--pipeline.instruction", args.instruction, "--pipeline.editor-model", str(TOY_EDITOR_DIR),
            "--pipeline.relevance-iqr-ratio", str(TOY_EDITOR_IQR_RATIO), "--pipeline.seed", str(args.seed),
            *VARIANTS[name],
        ], logs / f"{timestamp}.log")  # fmt: skip
        after = render_dataset(
            load_pipeline(runs / "demo" / "relevance-splatfacto-tiny" / timestamp / "config.yml")
        )
        tau = float(VARIANTS[name][1])
        metrics = ground_truth_metrics(after.rgb, before.rgb, truth, *target, after.relevance, tau)
        metrics.pop("per_view")
        record[name] = metrics
        record["seconds"] = seconds
        _save(args.results, f"cpu-seed{args.seed}", record)  # after every variant: a partial run still counts
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main(tyro.cli(Args))
