"""Every GPU-only benchmark figure in one command (under 8 minutes on one GPU); JSON in benchmarks/results/.

    python benchmarks/gpu.py                        # a CUDA machine: SD-1.5-sized random-weight IP2P, fp16
    python benchmarks/gpu.py --device cpu --smoke   # the same steps at toy sizes on a CPU (checks the script)

Steps, each a subprocess with its own time limit, so a failure or an overrun keeps the other steps' results:
1. ``bench_crop.py --unet sd15 --size 512 --batch-unet sd15 --batch-size 512``: seconds per view update, full
   frame and cropped at a 25 % mask; k = 1, 2, 4 views per UNet call; peak memory of one update without and
   with the memory options -> ``crop.json`` under ``sd15-cuda``;
2. ``bench_scene_edit.py --gpu``: seconds per training iteration at 4096 rays (relevance nerfacto and
   nerfacto) and per pipeline update (render + edit) of a 512 px view -> ``scene_edit.json`` under ``gpu``;
3. the projection of a full scene edit, 60 views at 512 px, 4000 iterations, one view update per 10
   iterations (400 view updates): iterations x s/iteration + updates x (render overhead + edit), for
   full-frame updates (the paper, Instruct-NeRF2NeRF's cost), cropped ones at a 25 % mask and batched ones
   (k = 4: 100 events of 4 views) -> ``gpu.json`` (with the inputs it used and the steps that failed).
``--smoke`` writes into a temporary folder unless ``--output-dir`` is given, never into benchmarks/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

HERE = Path(__file__).parent


@dataclass
class Args:
    device: str = "cuda"
    """cuda (the real run) or cpu (with --smoke)."""
    smoke: bool = False
    """Toy sizes, one repeat: checks that every step runs and the JSON is written (minutes on a CPU)."""
    output_dir: Path | None = None
    """Where the JSON files go (default: benchmarks/results/, or a temporary folder with --smoke)."""
    precision: str = "fp16"
    """Editor precision on the GPU."""
    views: int = 60
    """Projection: training views of the scene."""
    iterations: int = 4000
    """Projection: editing iterations."""
    edit_every: int = 10
    """Projection: iterations per view update (the paper's n_edit)."""
    batch: int = 4
    """Projection: views per batched edit event."""


def steps(args: Args, out: Path) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of the benchmark steps."""
    py = sys.executable
    if args.smoke:
        crop = [
            "--unet",
            "tiny",
            "--size",
            "64",
            "--batch-unet",
            "tiny",
            "--batch-size",
            "32",
            "--steps",
            "2",
        ]
        crop += ["--repeats", "1", "--quality-samples", "0", "--precision", "fp32"]
        scene = ["--iterations", "2", "--updates", "1", "--size", "32", "--rays", "256"]
    else:
        crop = ["--unet", "sd15", "--size", "512", "--batch-unet", "sd15", "--batch-size", "512"]
        crop += ["--repeats", "3", "--quality-samples", "0", "--precision", args.precision]
        scene = ["--gpu", "--iterations", "20", "--updates", "2", "--precision", args.precision]
    crop += ["--device", args.device, "--output", str(out / "crop.json")]
    scene += ["--output", str(out / "scene_edit.json")]
    return [
        ("crop", [py, str(HERE / "bench_crop.py"), *crop], 270),
        ("scene", [py, str(HERE / "bench_scene_edit.py"), *scene], 180),
    ]


def project(args: Args, crop: dict, scene: dict) -> dict:
    """Projected wall time of a full scene edit from the measured per-iteration and per-update seconds."""
    updates = args.iterations // args.edit_every
    iteration_s = scene["relevance_ms_per_iteration"] / 1000
    edit_full = crop["speed"]["full_s"]
    # what a pipeline update costs beyond the edit itself: the render and the bookkeeping
    overhead = max(scene["seconds_per_update_revisit"] - edit_full, 0.0)
    batched_call = crop["batched"]["seconds_per_call"][str(args.batch)]
    training = args.iterations * iteration_s
    variants = {
        "full_frame": updates * (overhead + edit_full),
        "cropped_25pct_mask": updates * (overhead + crop["speed"]["cropped_s"]),
        f"batched_k{args.batch}": updates // args.batch * (args.batch * overhead + batched_call),
    }
    minutes = {name: round((training + edits) / 60, 2) for name, edits in variants.items()}
    return {
        "scene": f"{args.views} views at 512 px, {args.iterations} iterations, one view update per "
        f"{args.edit_every} iterations ({updates} view updates)",
        "training_s": round(training, 1),
        "update_overhead_s": round(overhead, 3),
        "edit_s": {name: round(edits, 1) for name, edits in variants.items()},
        "total_minutes": minutes,
        "speedup_over_full_frame": {name: round(minutes["full_frame"] / m, 3) for name, m in minutes.items()},
    }


def main(args: Args) -> int:
    if args.smoke:
        out = args.output_dir or Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    else:
        out = args.output_dir or HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"smoke": args.smoke, "device": args.device, "steps": {}}
    for name, command, limit in steps(args, out):
        start = time.perf_counter()
        try:
            done = subprocess.run(command, timeout=limit, check=False)
            status = "ok" if done.returncode == 0 else f"exit code {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit} s"
        record["steps"][name] = {"status": status, "seconds": round(time.perf_counter() - start, 1)}
        print(f"[gpu.py] {name}: {status}", flush=True)
    crop_key = ("tiny-" if args.smoke else "sd15-") + args.device.split(":")[0]
    try:
        crop = json.loads((out / "crop.json").read_text())[crop_key]
        scene = json.loads((out / "scene_edit.json").read_text())["cpu" if args.smoke else "gpu"]
        record["inputs"] = {"crop": crop, "scene": scene}
        record["projection"] = project(args, crop, scene)
    except (OSError, KeyError, json.JSONDecodeError) as err:
        record["projection"] = f"not computed: {type(err).__name__}: {err}"
    (out / "gpu.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record.get("projection"), indent=2))
    print(f"[gpu.py] written to {out / 'gpu.json'}")
    return 0 if all(s["status"] == "ok" for s in record["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
