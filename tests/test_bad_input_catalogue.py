"""Bad input to ``relevance-eval``, ``relevance-scene``, ``relevance-demo`` and ``ns-train`` with the scene
editing methods: every case ends with exit code 2 and ONE line ``<command>: error: <what to do>`` on stderr
(no traceback), checked before any model loads or any rendering, and leaves the user's folder byte-identical
(nothing written, changed or deleted). The commands run in-process (their ``main`` / ``entrypoint`` with the
arguments given), so the cases take seconds; ``test_one_line_from_a_fresh_process`` runs a few as
subprocesses to see the whole stderr, library warnings included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from folder_state import snapshot

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.cli import demo, scene
from relevance_nerf2nerf.cli import eval as eval_cli
from relevance_nerf2nerf.scenes import generate_scene


def assert_one_line(err: str, program: str, *words: str) -> None:
    """``err`` is exactly one line ``<program>: error: ...`` holding every word, and no traceback."""
    assert err.startswith(f"{program}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "╭" not in err, err
    for word in words:
        assert word in err, err


def assert_refused(capsys, folder: Path, call, program: str, *words: str) -> str:
    """``call()`` returns exit code 2 with one error line holding ``words``; ``folder`` is byte-identical
    afterwards. Returns the error line."""
    before = snapshot(folder)
    capsys.readouterr()
    assert call() == 2
    err = capsys.readouterr().err
    assert_one_line(err, program, *words)
    assert snapshot(folder) == before
    return err


def _write_run(config, root: Path, timestamp: str) -> Path:
    """A run folder as ns-train leaves it (config.yml, a checkpoint file that no check reads)."""
    config.output_dir, config.experiment_name, config.timestamp = root, "user", timestamp
    run_dir = config.get_base_dir()
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "config.yml").write_text(yaml.dump(config))
    (run_dir / "nerfstudio_models" / "step-000000009.ckpt").write_bytes(b"weights")
    return run_dir / "config.yml"


@pytest.fixture
def user(tmp_path) -> Path:
    """A user's folder: a 2-view scene (no eval views), a base run and its edit, records for the images sweep,
    a camera path, a folder of earlier results and assorted files."""
    import copy

    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny

    info = generate_scene(tmp_path / "scene", seed=0, num_views=2, width=16, height=16)
    base = copy.deepcopy(nerfacto_tiny.config)
    base.pipeline.datamanager.data = info.output_dir
    base_config = _write_run(base, tmp_path / "runs", "base")
    edit = copy.deepcopy(relevance_nerf2nerf_tiny.config)
    edit.pipeline.datamanager.data = info.output_dir
    edit.pipeline.instruction = "make the cube blue"
    edit.pipeline.editor_model = str(TOY_EDITOR_DIR)
    edit.pipeline.base_checkpoint = base_config.parent
    _write_run(edit, tmp_path / "runs", "edit")
    record = {"image": "scene/images/frame_00000.png", "instruction": "make the cube blue",
              "input_caption": "a red cube", "output_caption": "a blue cube"}  # fmt: skip
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "camera_path.json").write_text(json.dumps({"render_height": 16, "render_width": 16,
                                                           "camera_path": []}))  # fmt: skip
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "eval.json").write_text("an earlier evaluation")
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "emptyrun" / "nerfstudio_models").mkdir(parents=True)
    (tmp_path / "emptyrun" / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"weights")
    (tmp_path / "emptyrun" / "config.yml").write_text("")
    (tmp_path / "not_clip").mkdir()
    (tmp_path / "not_clip" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "clip_without_weights").mkdir()
    (tmp_path / "clip_without_weights" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    return tmp_path


def _edited(root: Path) -> Path:
    return root / "runs" / "user" / "relevance-nerf2nerf-tiny" / "edit" / "config.yml"


def _base(root: Path) -> Path:
    return root / "runs" / "user" / "nerfacto-tiny" / "base" / "config.yml"


def _damage(root: Path, case: str) -> None:
    """Change the user's folder for cases that need a damaged file (before the snapshot)."""
    edited = _edited(root)
    if case == "edited config holds pipeline: 5":
        edited.write_text("pipeline: 5\n")
    elif case == "edited config cut in half":
        lines = edited.read_text().splitlines(keepends=True)
        edited.write_text("".join(lines[: len(lines) // 2]))
    elif case == "base config cut in half":
        text = _base(root).read_text()
        _base(root).write_text(text[: len(text) // 2])
    elif case == "edited config is binary":
        edited.write_bytes(bytes(range(256)) * 4)
    elif case == "edited config is empty":
        edited.write_text("")
    elif case == "the run's dataset was moved":
        (root / "scene").rename(root / "scene-moved")
    elif case == "the edited run's editor is gone":
        edited.write_text(edited.read_text().replace(str(TOY_EDITOR_DIR), str(root / "editor-gone")))
    elif case == "camera path is not JSON":
        (root / "camera_path.json").write_text("{not json")


SCENE_EVAL_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "edited config is empty": ([], ("--edited-config", "is empty")),
    "edited config holds pipeline: 5": ([], ("--edited-config", "not a run's settings")),
    "edited config cut in half": ([], ("--edited-config", "config.yml")),
    "edited config is binary": ([], ("--edited-config", "cannot be read")),
    "base config is empty": (["--base-config", "{root}/emptyrun/config.yml"], ("--base-config",)),
    "base config cut in half": ([], ("the edit's base run", "config.yml")),
    "the run's dataset was moved": ([], ("does not exist", "dataset")),
    "the edited run's editor is gone": ([], ("--pipeline.editor-model", "editor-gone")),
    "eval views of a run without any": (["--views", "eval"], ("no eval views", "--views train")),
    "camera path with no cameras": (["--camera-path", "{root}/camera_path.json"], ("holds no cameras",)),
    "camera path is not JSON": (["--camera-path", "{root}/camera_path.json"], ("not JSON",)),
    "camera path missing": (["--camera-path", "{root}/none.json"], ("does not exist",)),
    "camera path with ground truth": (
        ["--camera-path", "{root}/camera_path.json", "--scene", "{root}/scene"], ("drop --camera-path",)),
    "target not in the scene": (
        ["--scene", "{root}/scene", "--target", "pyramid"], ("--target pyramid", "cone, cube, sphere")),
    "target without a scene": (["--target", "cube"], ("--scene",)),
    "scene without masks": (["--scene", "{root}/results"], ("masks",)),
    "tau above 1": (["--mask-threshold", "2"], ("--mask-threshold",)),
    "output folder holds files": (["--output-dir", "{root}/results"], ("not empty",)),
    "output folder is a file": (["--output-dir", "{root}/afile"], ("is a file",)),
    "output folder is a dangling link": (["--output-dir", "{root}/dangling"], ("does not exist",)),
    "clip model folder of another model": (
        ["--clip-model", "{root}/not_clip", "--input-caption", "a", "--output-caption", "b"],
        ("not a CLIP model", "bert")),
    "clip model folder without weights": (
        ["--clip-model", "{root}/clip_without_weights", "--input-caption", "a", "--output-caption", "b"],
        ("no weights",)),
    "clip model folder missing": (
        ["--clip-model", "./no-such-clip", "--input-caption", "a", "--output-caption", "b"],
        ("no such folder",)),
    "clip hub id not cached offline": (
        ["--clip-model", "someone/uncached-clip", "--input-caption", "a", "--output-caption", "b"],
        ("offline", "someone/uncached-clip")),
    "caption of zero-width spaces": (
        ["--clip-model", "{root}/not_clip", "--input-caption", "\u200b\u200b", "--output-caption", "b"],
        ("--input-caption is empty",)),
    "output caption missing": (
        ["--clip-model", "{root}/not_clip", "--input-caption", "a"], ("--output-caption",)),
}


@pytest.mark.parametrize("case", sorted(SCENE_EVAL_CASES))
def test_relevance_eval_scene_bad_input(user, capsys, monkeypatch, case):
    """Refused before either run loads: ``load_pipeline`` would fail the test if it were reached."""
    from relevance_nerf2nerf.evaluation import render

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(render, "load_pipeline", lambda *a: pytest.fail("a run was loaded"))
    flags, words = SCENE_EVAL_CASES[case]
    _damage(user, case)
    args = ["scene", "--edited-config", str(_edited(user)), "--output-dir", str(user / "eval")]
    if "--clip-model" not in flags:
        args += ["--clip-model", "none"]
    args += [f.format(root=user) for f in flags]
    err = assert_refused(capsys, user, lambda: eval_cli.main(args), "relevance-eval", *words)
    assert ("offline" in err) == ("offline" in words)


def _records_line(root: Path, line: str | bytes) -> None:
    path = root / "records.jsonl"
    path.write_bytes(line if isinstance(line, bytes) else (line + "\n").encode())


IMAGES_EVAL_CASES: dict[str, tuple[str | bytes | None, list[str], tuple[str, ...]]] = {
    "record is an array": ('["scene/images/frame_00000.png"]', [], ("line 1", "list", "object")),
    "record is a bare string": ('"make the cube blue"', [], ("line 1", "str", "object")),
    "image is a number": ('{"image": 5, "instruction": "make it blue", "input_caption": "a", '
                          '"output_caption": "b"}', [], ("line 1", "image")),  # fmt: skip
    "records file is binary": (bytes(range(256)) * 8, [], ("UTF-8",)),
    "input caption is null": ('{"image": "scene/images/frame_00000.png", "instruction": "make it blue", '
                              '"input_caption": null, "output_caption": "b"}', [],
                              ("input_caption",)),  # fmt: skip
    "instruction given as a list": ('{"image": "scene/images/frame_00000.png", "instruction": ["make it '
                                    'blue"], "input_caption": "a", "output_caption": "b"}', [],
                                    ("instruction must be one text", "list")),  # fmt: skip
    "instruction of zero-width spaces": ('{"image": "scene/images/frame_00000.png", "instruction": '
                                         '"\\u200b\\u200b", "input_caption": "a", "output_caption": "b"}', [],
                                         ("instruction is empty",)),  # fmt: skip
    "image missing": ('{"image": "nope.png", "instruction": "make it blue", "input_caption": "a", '
                      '"output_caption": "b"}', [], ("nope.png",)),  # fmt: skip
    "records file empty": ("", [], ("holds no records",)),
    "records given as the file": (None, ["--records", "{root}/records.jsonl"], ("is a file", "the folder")),
    "clip none": (None, ["--clip-model", "none"], ("--clip-model none",)),
    "clip folder of another model": (None, ["--clip-model", "{root}/not_clip"], ("not a CLIP model",)),
    "editor folder missing": (None, ["--editor-model", "./no-such-editor"], ("--editor-model",)),
    "editor hub id not cached offline": (None, ["--editor-model", "someone/uncached-ip2p"], ("offline",)),
    "tau above 1": (None, ["--mask-thresholds", "1.5"], ("--mask-thresholds",)),
    "text guidance nan": (None, ["--text-guidance", "nan"], ("--text-guidance",)),
    "output folder holds files": (None, ["--output-dir", "{root}/results"], ("not empty",)),
}


@pytest.mark.parametrize("case", sorted(IMAGES_EVAL_CASES))
def test_relevance_eval_images_bad_input(user, tiny_clip_dir, capsys, monkeypatch, case):
    """Refused before the editor or CLIP loads (both would fail the test)."""
    from relevance_nerf2nerf.diffusion import editor
    from relevance_nerf2nerf.evaluation import clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(editor, "load_editor", lambda *a, **k: pytest.fail("the editor was loaded"))
    monkeypatch.setattr(clip.ClipEmbedder, "__init__", lambda *a, **k: pytest.fail("CLIP was loaded"))
    line, flags, words = IMAGES_EVAL_CASES[case]
    if line is not None:
        _records_line(user, line)
    args = ["images", "--records", str(user), "--output-dir", str(user / "sweep"),
            "--editor-model", str(TOY_EDITOR_DIR), "--clip-model", str(tiny_clip_dir)]  # fmt: skip
    args += [f.format(root=user) for f in flags]
    err = assert_refused(capsys, user, lambda: eval_cli.main(args), "relevance-eval", *words)
    assert ("offline" in err) == ("offline" in words)


SCENE_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "folder holding a user's transforms.json": ("mine", ("not empty",)),
    "folder holding an earlier scene": ("scene", ("not empty",)),
    "folder inside a file": ("afile/scene", ("afile",)),
}


@pytest.mark.parametrize("case", sorted(SCENE_CASES))
def test_relevance_scene_never_writes_into_a_used_folder(user, capsys, case):
    folder, words = SCENE_CASES[case]
    (user / "mine").mkdir()
    (user / "mine" / "transforms.json").write_text("the user's own poses")
    args = ["--output-dir", str(user / folder), "--seed", "4", "--num-views", "2"]
    assert_refused(capsys, user, lambda: scene.main(args), "relevance-scene", *words)


DEMO_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "extra edit flag unknown": (["--extra-edit-args=--pipeline.no-such-flag"], ("--pipeline.no-such-flag",)),
    "extra edit value not a number": (["--extra-edit-args=--pipeline.mask-threshold", "x"],
                                      ("--pipeline.mask-threshold", "'x'")),  # fmt: skip
    "extra edit flag without its value": (["--extra-edit-args=--pipeline.edit-every"],
                                          ("--pipeline.edit-every",)),  # fmt: skip
    "extra edit t_rel 0": (["--extra-edit-args=--pipeline.t-rel", "0"], ("--pipeline.t-rel",)),
    "extra edit every 0": (["--extra-edit-args=--pipeline.edit-every", "0"], ("--pipeline.edit-every",)),
    "extra edit moves the run": (["--extra-edit-args=--timestamp", "x"], ("--timestamp",)),
    "extra edit asks for help": (["--extra-edit-args=--help"], ("--help",)),
}


@pytest.mark.parametrize("case", sorted(DEMO_CASES))
def test_relevance_demo_extra_edit_args_checked_before_the_base_trains(user, capsys, monkeypatch, case):
    monkeypatch.setattr(demo, "run_ns_train", lambda *a, **k: pytest.fail("ns-train ran"))
    flags, words = DEMO_CASES[case]
    args = ["--num-views", "2", "--width", "16", "--height", "16", "--output-dir", str(user / "demo"), *flags]
    assert_refused(capsys, user, lambda: demo.main(args), "relevance-demo", "--extra-edit-args", *words)


# --- ns-train set-up ------------------------------------------------------------------------------------
def _finished_edit(root: Path) -> None:
    """An edit that finished in runs/user/relevance-nerf2nerf-tiny/edit (checkpoint, edited dataset)."""
    run_dir = _edited(root).parent
    (run_dir / "edited_dataset" / "images").mkdir(parents=True)
    (run_dir / "edited_dataset" / "images" / "frame_00000.png").write_bytes(b"an edited view")


def _running_edit(root: Path) -> subprocess.Popen:
    """An edit of another live process (its lock) in runs/user/relevance-nerf2nerf-tiny/edit, no checkpoint
    yet."""
    import socket

    from relevance_nerf2nerf.nerf.run_folder import LOCK_NAME

    run_dir = _edited(root).parent
    for checkpoint in (run_dir / "nerfstudio_models").iterdir():
        checkpoint.unlink()
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": process.pid, "host": socket.gethostname()}))
    return process


NS_TRAIN_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "t_rel 0": (["--pipeline.t-rel", "0"], ("--pipeline.t-rel",)),
    "text guidance nan": (["--pipeline.text-guidance", "nan"], ("--pipeline.text-guidance",)),
    "image guidance inf": (["--pipeline.image-guidance", "inf"], ("--pipeline.image-guidance",)),
    "instruction empty": (["--pipeline.instruction", ""], ("--pipeline.instruction", "empty")),
    "instruction of zero-width spaces": (["--pipeline.instruction", "\u200b \u200b"], ("empty",)),
    "editor folder missing": (["--pipeline.editor-model", "./no-such-editor"], ("--pipeline.editor-model",)),
    "editor hub id not cached offline": (["--pipeline.editor-model", "someone/uncached"], ("offline",)),
    "every 0 iterations": (["--pipeline.edit-every", "0"], ("--pipeline.edit-every",)),
    "same folder as a finished edit": ([], ("already holds an edit", "--load-dir")),
    "same folder as a running edit": ([], ("running now",)),
    "resume of a running edit": (["--load-dir", "{run}/nerfstudio_models"], ("running now",)),
}


@pytest.mark.parametrize("case", sorted(NS_TRAIN_CASES))
def test_ns_train_set_up_bad_input(user, capsys, monkeypatch, case):
    """``ns-train relevance-nerf2nerf-tiny`` refuses in set-up, before config.yml or the run folder is
    written, with exit status 2."""
    from nerfstudio.scripts import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flags, words = NS_TRAIN_CASES[case]
    process = None
    if case == "same folder as a finished edit":
        _finished_edit(user)
    elif "running edit" in case:
        process = _running_edit(user)
    run_dir = _edited(user).parent
    timestamp = "edit" if "edit" in case else "new"  # the folder of the user's edit, or a new one
    argv = ["ns-train", "relevance-nerf2nerf-tiny", "--data", str(user / "scene"), "--output-dir",
            str(user / "runs"), "--experiment-name", "user", "--timestamp", timestamp, "--vis", "tensorboard",
            "--pipeline.instruction", "make the cube blue", "--pipeline.editor-model", str(TOY_EDITOR_DIR),
            *(f.format(run=run_dir) for f in flags)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)

    def ns_train() -> int | str | None:
        try:
            train.entrypoint()
        except SystemExit as exit_:
            return exit_.code
        return 0

    try:
        assert_refused(capsys, user, ns_train, "ns-train", *words)
    finally:
        if process is not None:
            process.kill()
            process.wait()


# --- whole stderr of a fresh process ----------------------------------------------------------------------
@pytest.mark.parametrize("program", ["relevance-eval", "relevance-demo"])
def test_one_line_from_a_fresh_process(user, program):
    """The whole stderr of a fresh process is the one error line: the deprecation warnings torch and
    nerfstudio print when nerfstudio is imported are silenced."""
    if program == "relevance-eval":
        _damage(user, "edited config is empty")
        args = ["scene", "--edited-config", str(_edited(user)), "--output-dir", str(user / "eval"),
                "--clip-model", "none"]  # fmt: skip
        module = "relevance_nerf2nerf.cli.eval"
    else:
        args = ["--output-dir", str(user / "demo"), "--extra-edit-args=--pipeline.no-such-flag"]
        module = "relevance_nerf2nerf.cli.demo"
    before = snapshot(user)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    script = f"import sys; sys.argv[0] = {program!r}; from {module} import entrypoint; entrypoint()"
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert_one_line(result.stderr, program)
    assert snapshot(user) == before


def test_clip_loading_errors_say_offline_only_for_a_hub_id(tiny_clip_dir, tmp_path, monkeypatch):
    """A local CLIP folder whose weights cannot be read is named as damaged; only a hub id that cannot be
    fetched is said to need the network."""
    import shutil

    from relevance_nerf2nerf.errors import ModelNotFoundError
    from relevance_nerf2nerf.evaluation.clip import ClipEmbedder

    damaged = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, damaged)
    weights = next(p for p in damaged.iterdir() if p.name.startswith(("model.", "pytorch_model.")))
    weights.write_bytes(b"not weights")
    with pytest.raises(ModelNotFoundError) as local:
        ClipEmbedder(damaged)
    assert "damaged" in str(local.value) and "offline" not in str(local.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="offline"):
        ClipEmbedder("someone/uncached-clip")
