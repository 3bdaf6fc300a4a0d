"""Kill and resume, as a user does it: ``ns-train relevance-nerf2nerf-tiny`` (tiny real-diffusers IP2P) is
killed with SIGKILL once a checkpoint holds at least two edited views, then resumed with the same command
plus ``--load-dir``: the resumed run starts from the edited views, not the captures, the update count keeps
growing, and the run ends at its planned iteration and update count with the progress display below 100%.
A kill while a checkpoint is being written leaves the previous, complete one (atomic saves)."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from method_configs.relevance_nerf2nerf import nerfacto_tiny
from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file
from relevance_nerf2nerf.nerf.trainer import RelevanceTrainer
from relevance_nerf2nerf.scenes import generate_scene

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
PLAN, EDIT_EVERY = 30, 3  # steps 0..29, updates at 0, 3, ..., 27: 10, one per view (no view edited twice)
_PROGRESS = re.compile(r"\d+\s+\(\s*(\d+(?:\.\d+)?)%\)")  # nerfstudio's "step (xx.xx%)" column


def _latest_state(run: Path) -> dict | None:
    """The newest complete checkpoint of a run (None while there is none, or it is still being written)."""
    checkpoints = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    try:
        return load_checkpoint_file(checkpoints[-1]) if checkpoints else None
    except (OSError, RuntimeError, EOFError):  # half-written, or replaced between listing and reading
        return None


@pytest.mark.slow
def test_killed_run_resumes_the_edit(tmp_path, tiny_ip2p_dir):
    scene = generate_scene(tmp_path / "scene", seed=0, num_views=10, width=24, height=24).output_dir
    runs = tmp_path / "runs"
    common = [BIN / "ns-train", "relevance-nerf2nerf-tiny", "--data", scene, "--output-dir", runs,
              "--experiment-name", "resume", "--vis", "tensorboard", "--steps-per-save", "4",
              "--pipeline.datamanager.train-num-rays-per-batch", "256", "--max-num-iterations", str(PLAN),
              "--pipeline.edit-every", str(EDIT_EVERY), "--logging.steps-per-log", "1",
              "--pipeline.edit-steps", "2", "--pipeline.mask-threshold", "0",  # tau 0: every pixel changes
              "--pipeline.instruction", "make the cube blue",
              "--pipeline.editor-model", tiny_ip2p_dir]  # fmt: skip
    first = runs / "resume" / "relevance-nerf2nerf-tiny" / "first"
    log = tmp_path / "first.log"
    with log.open("w") as stream:
        process = subprocess.Popen(
            [str(c) for c in [*common, "--timestamp", "first"]],
            stdout=stream, stderr=subprocess.STDOUT, env=ENV,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (state := _latest_state(first)) is None or int(state["pipeline"]["datamanager.edits_done"]) < 2:
            assert process.poll() is None, f"ns-train exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no checkpoint with two edits:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    saved = _latest_state(first)  # the run may have saved once more before the kill landed
    assert saved is not None
    step, saved = saved["step"], saved["pipeline"]
    done, counts, images = (saved[f"datamanager.{k}"] for k in ("edits_done", "edit_counts", "edited_images"))
    edited = [int(i) for i in torch.nonzero(counts > 0)]
    assert int(done) >= 2 and len(edited) >= 2 and int(counts.sum()) == int(done)
    print(f"killed after the checkpoint of step {step} ({int(done)} updates, views {edited})")

    resumed = runs / "resume" / "relevance-nerf2nerf-tiny" / "resumed"
    result = subprocess.run(
        [str(c) for c in [*common, "--timestamp", "resumed", "--load-dir", first / "nerfstudio_models"]],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"resume failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    final = _latest_state(resumed)
    assert final is not None and final["step"] == PLAN - 1  # continued to the planned end, not PLAN more
    assert f"Resuming at step {step + 1} of {PLAN}" in result.stdout
    progress = [float(p) for p in _PROGRESS.findall(result.stdout)]
    assert progress and max(progress) <= 100.0 and min(progress) >= 100.0 * (step + 1) / PLAN - 0.01
    state = final["pipeline"]
    planned_updates = len(range(0, PLAN, EDIT_EVERY))
    assert int(state["datamanager.edits_done"]) == planned_updates  # continued, not restarted from zero
    new_counts = state["datamanager.edit_counts"]
    assert bool((new_counts >= counts).all()) and int(new_counts.sum()) == planned_updates
    assert bool(state["datamanager.relevance_valid"][edited].all())
    export = resumed / "edited_dataset"
    frames = json.loads((export / "transforms.json").read_text())["frames"]  # the capture's, eval views too
    frames = [frame for frame in frames if "edits" in frame]  # the training views, in dataset order
    assert [frame["edits"] for frame in frames] == new_counts.tolist()
    kept = [i for i in edited if new_counts[i] == counts[i]]  # edited before the kill, not since
    assert kept, "the resumed run re-edited every view edited before the kill"
    for i in kept:  # still the edit from before the kill, bit for bit, and not the capture
        assert torch.equal(state["datamanager.edited_images"][i], images[i])
        name = Path(frames[i]["file_path"]).name
        exported = torch.from_numpy(np.asarray(Image.open(export / "images" / name)))
        capture = torch.from_numpy(np.asarray(Image.open(scene / "images" / name)))
        assert torch.equal(exported, images[i]) and not torch.equal(exported, capture[..., :3])


class _Killed(BaseException):
    """Stands in for SIGKILL arriving while torch.save is writing."""


def test_a_kill_while_saving_leaves_the_last_complete_checkpoint(tmp_path, monkeypatch):
    scene = generate_scene(tmp_path / "scene", seed=0, num_views=10, width=16, height=16).output_dir
    config = copy.deepcopy(nerfacto_tiny.config)
    config.pipeline.datamanager.data = scene
    config.output_dir, config.timestamp, config.vis = tmp_path / "runs", "run", "tensorboard"
    trainer = config.setup(local_rank=0, world_size=1)
    assert isinstance(trainer, RelevanceTrainer)  # what ns-train builds from every method of ours
    trainer.setup()
    trainer.save_checkpoint(3)

    def killed_while_writing(_, path) -> None:
        Path(path).write_bytes(b"PK\x03\x04")  # the first bytes of a zip, then nothing
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed_while_writing)
        with pytest.raises(_Killed):
            trainer.save_checkpoint(7)
    checkpoint_dir = trainer.checkpoint_dir
    assert [path.name for path in checkpoint_dir.iterdir()] == ["step-000000003.ckpt"]

    config.load_dir = checkpoint_dir  # --load-dir: the newest step in the folder
    resumed = config.setup(local_rank=0, world_size=1)
    resumed.setup()
    assert resumed._start_step == 4
    resumed.save_checkpoint(11)  # the staging folder's leftover does not get in the way
    assert [path.name for path in checkpoint_dir.iterdir()] == ["step-000000011.ckpt"]
    assert sorted(path.name for path in checkpoint_dir.parent.glob("*models*")) == ["nerfstudio_models"]
    assert load_checkpoint_file(checkpoint_dir / "step-000000011.ckpt")["step"] == 11
