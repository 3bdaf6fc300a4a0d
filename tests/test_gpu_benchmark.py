"""``benchmarks/gpu.py`` and its splat step, ``benchmarks/bench_splat_speed.py``, without training: the step
list in the smoke and real modes, the projections on hand-made records, and that one missing step's results
keep the other projection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from benchmark_scripts import load

from relevance_nerf2nerf.errors import InvalidInputError


@pytest.fixture(scope="module")
def gpu():
    return load("gpu")


@pytest.fixture(scope="module")
def splat_bench():
    return load("bench_splat_speed")


CROP = {"speed": {"full_s": 2.0, "cropped_s": 0.5}, "batched": {"seconds_per_call": {"4": 5.0}}}
"""An editor record (``crop.json``): 2 s per full-frame update, 0.5 s cropped, 5 s per call of 4 views."""


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _steps(gpu, args, out: Path) -> dict[str, tuple[list[str], int]]:
    return {name: (command, limit) for name, command, limit in gpu.steps(args, out)}


def test_smoke_splat_step_runs_the_tiny_presets_on_the_cpu_at_toy_size(gpu, tmp_path):
    listed = _steps(gpu, gpu.Args(device="cpu", smoke=True), tmp_path)
    assert list(listed) == ["crop", "scene", "splat"]  # no gsplat build off CUDA
    command, limit = listed["splat"]
    assert Path(command[1]).name == "bench_splat_speed.py"
    assert _flag(command, "--preset") == "tiny"
    assert _flag(command, "--device") == "cpu"
    assert _flag(command, "--size") == "32"
    assert int(_flag(command, "--timed-iterations")) <= int(_flag(command, "--edit-iterations"))
    assert _flag(command, "--output") == str(tmp_path / "splat_speed.json")
    assert limit > 0


def test_real_splat_step_runs_the_full_presets_on_cuda_at_512_px_after_the_gsplat_build(gpu, tmp_path):
    listed = _steps(gpu, gpu.Args(), tmp_path)
    assert list(listed) == ["crop", "scene", "gsplat", "splat"]
    assert "gsplat.cuda._backend" in " ".join(listed["gsplat"][0])
    command, _ = listed["splat"]
    assert _flag(command, "--preset") == "full"
    assert _flag(command, "--device") == "cuda"
    assert _flag(command, "--size") == "512"
    assert _flag(command, "--output") == str(tmp_path / "splat_speed.json")
    timed_steps = sum(limit for name, (_, limit) in listed.items() if name != "gsplat")
    assert timed_steps <= 10 * 60


def test_splat_key_is_the_key_the_benchmark_merges_its_record_under(gpu, splat_bench):
    for args in (gpu.Args(device="cpu", smoke=True), gpu.Args()):
        preset, size = gpu.splat_settings(args)
        assert gpu.splat_key(args) == splat_bench.record_key(args.device, size, preset)
    assert gpu.splat_key(gpu.Args()) == "cuda-512px-full"


def test_splat_projection_of_a_hand_made_record(gpu):
    splat = {
        "base": {"peak_gpu_mib": 100.0},
        "edit": {
            "wall_seconds_per_iteration_median": 0.02,
            "gaussians_at_end": 500000,
            "peak_gpu_mib": 200.0,
        },
        "update": {"seconds_per_update_median": 0.1, "peak_gpu_mib": 300.0},
    }
    result = gpu.project_splat(gpu.Args(), CROP, splat)
    # 4000 iterations x 0.02 s = 80 s; 400 updates x (0.1 + 2.0) = 840 s; x (0.1 + 0.5) = 240 s;
    # 100 events x (4 x 0.1 + 5.0) = 540 s
    assert result["training_s"] == 80.0
    assert result["update_overhead_s"] == 0.1
    assert result["edit_s"] == {"full_frame": 840.0, "cropped_25pct_mask": 240.0, "batched_k4": 540.0}
    assert result["total_minutes"] == {"full_frame": 15.33, "cropped_25pct_mask": 5.33, "batched_k4": 10.33}
    assert result["speedup_over_full_frame"]["cropped_25pct_mask"] == round(15.33 / 5.33, 3)
    assert result["gaussians"] == 500000
    assert result["peak_gpu_mib"] == {"base": 100.0, "edit": 200.0, "update": 300.0}


def test_nerfacto_projection_of_a_hand_made_record(gpu):
    scene = {"relevance_ms_per_iteration": 50.0, "seconds_per_update_revisit": 2.3}
    result = gpu.project(gpu.Args(), CROP, scene)
    # 4000 x 0.05 s = 200 s; overhead 2.3 - 2.0 = 0.3 s; 400 x 2.3 = 920 s, 400 x 0.8 = 320 s,
    # 100 x (4 x 0.3 + 5.0) = 620 s
    assert result["training_s"] == 200.0
    assert result["update_overhead_s"] == 0.3
    assert result["edit_s"] == {"full_frame": 920.0, "cropped_25pct_mask": 320.0, "batched_k4": 620.0}
    assert result["total_minutes"] == {"full_frame": 18.67, "cropped_25pct_mask": 8.67, "batched_k4": 13.67}


def test_missing_splat_results_keep_the_nerfacto_projection(gpu, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "steps", lambda args, out: [])
    (tmp_path / "crop.json").write_text(json.dumps({"tiny-cpu": CROP}))
    scene = {"relevance_ms_per_iteration": 50.0, "seconds_per_update_revisit": 2.3}
    (tmp_path / "scene_edit.json").write_text(json.dumps({"cpu": scene}))
    assert gpu.main(gpu.Args(device="cpu", smoke=True, output_dir=tmp_path)) == 0
    record = json.loads((tmp_path / "gpu.json").read_text())
    assert record["projection"]["training_s"] == 200.0
    assert record["splat_projection"].startswith("not computed: FileNotFoundError")
    assert set(record["inputs"]) == {"crop", "scene"}


def test_full_presets_are_nerfstudios_splatfacto_and_relevance_splatfacto(splat_bench):
    from relevance_nerf2nerf.nerf.dataparser import PointCloudDataParserConfig

    base, edit = splat_bench.presets("full")
    assert (base.method_name, edit.method_name) == ("splatfacto", "relevance-splatfacto")
    assert isinstance(base.pipeline.datamanager.dataparser, PointCloudDataParserConfig)  # no open3d needed
    base, edit = splat_bench.presets("tiny")
    assert (base.method_name, edit.method_name) == ("splatfacto-tiny", "relevance-splatfacto-tiny")


def test_full_presets_on_the_cpu_are_refused_before_anything_is_written(splat_bench, tmp_path):
    output = tmp_path / "splat_speed.json"
    with pytest.raises(InvalidInputError, match="--device cuda"):
        splat_bench.main(splat_bench.Args(preset="full", device="cpu", output=output))
    with pytest.raises(InvalidInputError, match="--timed-iterations"):
        splat_bench.main(splat_bench.Args(base_iterations=5, timed_iterations=10, output=output))
    assert list(tmp_path.iterdir()) == []


def test_only_runs_the_named_steps_and_writes_gpu_json_after_each(gpu, tmp_path, monkeypatch):
    ran: list[str] = []

    def fake_run(command, timeout, check):
        if ran:  # the record of the step before is already on disk
            assert json.loads((tmp_path / "gpu.json").read_text())["steps"][ran[-1]]["status"] == "ok"
        ran.append(Path(command[1]).name if command[1] != "-c" else "gsplat")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(gpu.subprocess, "run", fake_run)
    assert gpu.main(gpu.Args(only=("gsplat", "splat"), output_dir=tmp_path)) == 0
    assert ran == ["gsplat", "bench_splat_speed.py"]
    assert set(json.loads((tmp_path / "gpu.json").read_text())["steps"]) == {"gsplat", "splat"}


def test_an_unknown_only_step_is_refused_before_anything_runs(gpu, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu.subprocess, "run", lambda *a, **k: pytest.fail("a step ran"))
    out = tmp_path / "out"
    assert gpu.main(gpu.Args(only=("splats",), output_dir=out)) == 2
    assert not out.exists()
