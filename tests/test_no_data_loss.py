"""Nothing a user has is lost: ``relevance-scene`` never writes into a used folder, an edit's run folder is
never overwritten by another run (but a killed run can always resume), and output folders appear whole or
not at all, also in an empty folder under a read-only parent, through a link, and on a full disk (one line,
exit code 2)."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from folder_state import snapshot

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.cli import eval as eval_cli
from relevance_nerf2nerf.cli import scene
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.run_folder import LOCK_NAME, check_run_dir, hold_run_dir, live_holder
from relevance_nerf2nerf.outputs import staged_output_dir
from relevance_nerf2nerf.scenes import generate_scene


def _one_line(err: str, program: str, *words: str) -> None:
    assert err.startswith(f"{program}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# --- relevance-scene --------------------------------------------------------------------------------------
def test_relevance_scene_never_replaces_an_existing_scene(tmp_path, capsys):
    """Seed 3 with 8 views, then seed 4 with 6 views into the same folder: refused, the first scene intact
    (no frame replaced, none left over from a mixture of two scenes)."""
    folder = tmp_path / "S"
    args = ["--output-dir", str(folder), "--width", "16", "--height", "16"]
    assert scene.main([*args, "--seed", "3", "--num-views", "8"]) == 0
    before = snapshot(tmp_path)
    assert scene.main([*args, "--seed", "4", "--num-views", "6"]) == 2
    _one_line(capsys.readouterr().err, "relevance-scene", "not empty")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["empty folder", "link to an empty folder"])
def test_relevance_scene_fills_an_empty_folder_whole(tmp_path, kind):
    target = tmp_path / "target"
    target.mkdir()
    folder = target
    if kind == "link to an empty folder":
        folder = tmp_path / "link"
        folder.symlink_to(target)
    args = ["--output-dir", str(folder), "--num-views", "2", "--width", "16", "--height", "16"]
    assert scene.main(args) == 0
    assert folder.is_symlink() == (kind == "link to an empty folder")
    assert sorted(p.name for p in target.iterdir()) == ["images", "masks", "scene.json", "transforms.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"target", folder.name})  # nothing staged


def test_relevance_scene_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    real_write_text = Path.write_text

    def full(path, *args, **kwargs):
        if path.name == "transforms.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    before = snapshot(tmp_path)
    args = ["--output-dir", str(tmp_path / "S"), "--num-views", "2", "--width", "16", "--height", "16"]
    assert scene.main(args) == 2
    _one_line(capsys.readouterr().err, "relevance-scene", "No space left on device", "nothing was written")
    assert snapshot(tmp_path) == before


# --- output folders ---------------------------------------------------------------------------------------
def test_an_empty_output_folder_is_filled_in_place(tmp_path):
    """An existing empty folder is staged inside itself: its parent is never written to (it may be
    read-only), and a link to it stays a link."""
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    for folder in (target, link):
        with staged_output_dir(folder) as staging:
            assert staging.parent == folder
            (staging / f"{folder.name}.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["link.json", "target.json"]
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


@pytest.mark.skipif(os.geteuid() == 0, reason="a read-only folder is writable for root")
def test_an_empty_output_folder_under_a_read_only_parent(tmp_path):
    parent = tmp_path / "parent"
    folder = parent / "out"
    folder.mkdir(parents=True)
    parent.chmod(0o555)
    try:
        with staged_output_dir(folder) as staging:
            (staging / "a.json").write_text("{}")
    finally:
        parent.chmod(0o755)
    assert [p.name for p in folder.iterdir()] == ["a.json"]


@pytest.mark.parametrize("where", ["new folder", "empty folder"])
def test_a_full_disk_leaves_nothing_and_says_so(tmp_path, where):
    from relevance_nerf2nerf.errors import OutputWriteError

    folder = tmp_path / "out"
    if where == "empty folder":
        folder.mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(OutputWriteError, match="No space left on device"):
        with staged_output_dir(folder) as staging:
            (staging / "a.json").write_text("{}")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert snapshot(tmp_path) == before


# --- relevance-eval: outputs ------------------------------------------------------------------------------
def _fake_runs(root: Path) -> tuple[Path, Path]:
    """A 2-view scene, a base run and its edit (config.yml and a checkpoint file never read)."""
    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny

    info = generate_scene(root / "scene", seed=0, num_views=2, width=16, height=16)
    paths = []
    for preset, name in ((nerfacto_tiny, "base"), (relevance_nerf2nerf_tiny, "edit")):
        config = copy.deepcopy(preset.config)
        config.pipeline.datamanager.data = info.output_dir
        config.output_dir, config.experiment_name, config.timestamp = root / "runs", "user", name
        if name == "edit":
            config.pipeline.instruction = "make the cube blue"
            config.pipeline.editor_model = str(TOY_EDITOR_DIR)
            config.pipeline.base_checkpoint = paths[0].parent
        (config.get_base_dir() / "nerfstudio_models").mkdir(parents=True)
        (config.get_base_dir() / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"")
        (config.get_base_dir() / "config.yml").write_text(yaml.dump(config))
        paths.append(config.get_base_dir() / "config.yml")
    return paths[0], paths[1]


@pytest.fixture
def rendered(monkeypatch):
    """``relevance-eval scene`` renders the scene's ground truth for both runs (no model is trained)."""
    from relevance_nerf2nerf.evaluation import scene_eval
    from relevance_nerf2nerf.evaluation.ground_truth import load_ground_truth
    from relevance_nerf2nerf.evaluation.render import Renders

    def render_runs(command, base_path):
        names = ["frame_00000.png", "frame_00001.png"]
        truth = load_ground_truth(command.scene, names)
        before = Renders(names, truth.images, None)
        after = Renders(names, truth.images.flip(-1), torch.full(truth.images.shape[:-1], 0.7))
        return before, after

    monkeypatch.setattr(scene_eval, "render_runs", render_runs)


def test_eval_scene_into_a_link_to_an_empty_folder(tmp_path, rendered):
    """The results land in the linked folder whole; no staging folder is left anywhere."""
    _, edited = _fake_runs(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    args = ["scene", "--edited-config", str(edited), "--scene", str(tmp_path / "scene"), "--clip-model",
            "none", "--output-dir", str(tmp_path / "link")]  # fmt: skip
    assert eval_cli.main(args) == 0
    written = sorted(p.name for p in (tmp_path / "target").iterdir())
    assert written == ["contact_sheet.png", "eval.json", "eval.md"]
    assert json.loads((tmp_path / "link" / "eval.json").read_text())["ground_truth"]["object"] == "cube"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "runs", "scene", "target"]


def test_eval_scene_on_a_full_disk_is_one_line(tmp_path, rendered, capsys, monkeypatch):
    from relevance_nerf2nerf.evaluation import sheets

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sheets, "contact_sheet", full)
    _, edited = _fake_runs(tmp_path)
    before = snapshot(tmp_path)
    args = ["scene", "--edited-config", str(edited), "--scene", str(tmp_path / "scene"), "--clip-model",
            "none", "--output-dir", str(tmp_path / "eval")]  # fmt: skip
    assert eval_cli.main(args) == 2
    _one_line(capsys.readouterr().err, "relevance-eval", "No space left on device", "nothing was written")
    assert snapshot(tmp_path) == before


def test_eval_images_on_a_full_disk_is_one_line(tmp_path, tiny_ip2p_dir, tiny_clip_dir, capsys, monkeypatch):
    from relevance_nerf2nerf.evaluation import image_eval

    def full(points, path, title=""):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_eval, "plot_sweep", full)
    generate_scene(tmp_path / "scene", seed=0, num_views=1, width=16, height=16)
    record = {"image": "scene/images/frame_00000.png", "instruction": "make the cube blue",
              "input_caption": "a red cube", "output_caption": "a blue cube"}  # fmt: skip
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    before = snapshot(tmp_path)
    args = ["images", "--records", str(tmp_path), "--output-dir", str(tmp_path / "sweep"), "--editor-model",
            str(tiny_ip2p_dir), "--clip-model", str(tiny_clip_dir), "--mask-thresholds", "0.5",
            "--image-guidances", "1.5", "--steps", "1"]  # fmt: skip
    assert eval_cli.main(args) == 2
    _one_line(capsys.readouterr().err, "relevance-eval", "No space left on device")
    assert snapshot(tmp_path) == before


# --- an edit's run folder ---------------------------------------------------------------------------------
@pytest.fixture
def edit_config(tmp_path):
    """The config of an edit whose run folder holds a finished edit (checkpoint and edited dataset)."""
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny

    config = copy.deepcopy(relevance_nerf2nerf_tiny.config)
    config.output_dir, config.experiment_name, config.timestamp = tmp_path / "outputs", "bear", "edit"
    run_dir = config.get_base_dir()
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "nerfstudio_models" / "step-000000039.ckpt").write_bytes(b"the finished edit")
    (run_dir / "edited_dataset" / "images").mkdir(parents=True)
    (run_dir / "edited_dataset" / "images" / "frame_00000.png").write_bytes(b"20 updates")
    return config


def test_a_finished_edit_is_not_overwritten_by_a_new_run(edit_config):
    with pytest.raises(InvalidInputError, match="step-000000039.ckpt.*--load-dir"):
        check_run_dir(edit_config)
    (edit_config.get_base_dir() / "nerfstudio_models" / "step-000000039.ckpt").unlink()
    with pytest.raises(InvalidInputError, match="edited_dataset"):
        check_run_dir(edit_config)


def test_a_finished_edit_resumes_from_its_own_folder(edit_config):
    edit_config.load_dir = edit_config.get_base_dir() / "nerfstudio_models"
    check_run_dir(edit_config)
    edit_config.load_dir = None
    edit_config.load_checkpoint = edit_config.get_base_dir() / "nerfstudio_models" / "step-000000039.ckpt"
    check_run_dir(edit_config)


def test_a_killed_runs_lock_never_blocks_its_resume(edit_config):
    """A process holds the folder and is killed (SIGKILL, no clean-up): its resume goes ahead, and a new
    folder of the same name with no work in it may be reused."""
    run_dir = edit_config.get_base_dir()
    script = ("import json, os, socket, sys, time; from pathlib import Path; "
              f"Path({str(run_dir / LOCK_NAME)!r}).write_text(json.dumps({{'pid': os.getpid(), "
              "'host': socket.gethostname()})); print('held', flush=True); time.sleep(120)")  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        assert live_holder(run_dir) == process.pid
        edit_config.load_dir = run_dir / "nerfstudio_models"
        with pytest.raises(InvalidInputError, match="running now"):
            check_run_dir(edit_config)  # a second process may not resume a running edit
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (run_dir / LOCK_NAME).is_file() and live_holder(run_dir) is None
    check_run_dir(edit_config)  # the killed run's own resume
    for path in (run_dir / "nerfstudio_models").iterdir():
        path.unlink()
    shutil.rmtree(run_dir / "edited_dataset")
    edit_config.load_dir = None
    check_run_dir(edit_config)  # nothing to lose: a stale lock alone refuses nothing


def test_the_lock_names_this_process_and_goes_with_it(tmp_path):
    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny

    config = copy.deepcopy(relevance_nerf2nerf_tiny.config)
    config.output_dir, config.experiment_name, config.timestamp = tmp_path, "x", "edit"
    hold_run_dir(config)
    lock = json.loads((config.get_base_dir() / LOCK_NAME).read_text())
    assert lock == {"pid": os.getpid(), "host": socket.gethostname()}
    assert live_holder(config.get_base_dir()) is None  # this process's own lock holds nothing against it
    script = ("import copy, sys; from pathlib import Path; "
              "from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny as m; "
              "from relevance_nerf2nerf.nerf.run_folder import hold_run_dir; "
              f"c = copy.deepcopy(m.config); c.output_dir, c.timestamp = Path({str(tmp_path)!r}), 'other'; "
              "c.experiment_name = 'x'; "
              "hold_run_dir(c)")  # fmt: skip
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert not (tmp_path / "x" / config.method_name / "other" / LOCK_NAME).exists()  # removed at exit
    base = copy.deepcopy(nerfacto_tiny.config)  # not an edit: nerfstudio's own behaviour is kept
    base.output_dir, base.experiment_name, base.timestamp = tmp_path, "x", "base"
    (base.get_base_dir() / "nerfstudio_models").mkdir(parents=True)
    (base.get_base_dir() / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"")
    check_run_dir(base)


def test_a_checkpoint_that_does_not_fit_its_run_is_one_error(tmp_path):
    """A run whose checkpoint cannot be loaded into its config (here: not a checkpoint at all; also a dataset
    replaced by another scene, which changes the per-view parameters) is one RelevanceError, not a trace."""
    from relevance_nerf2nerf.errors import RelevanceError
    from relevance_nerf2nerf.evaluation.render import load_pipeline

    base, _ = _fake_runs(tmp_path)
    (base.parent / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(RelevanceError, match="cannot load the run") as error:
        load_pipeline(base)
    assert "\n" not in str(error.value)


def test_a_results_json_is_written_whole_or_left_as_it_was(tmp_path):
    """``write_json`` (every benchmark's results file) creates the folder, replaces the file whole, and leaves
    an existing file untouched when the data cannot be written."""
    import json

    from relevance_nerf2nerf.outputs import write_json

    path = tmp_path / "results" / "bench.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]
