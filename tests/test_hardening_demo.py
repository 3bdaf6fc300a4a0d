"""``relevance-demo`` validates everything before touching disk and deletes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_state import snapshot

from relevance_nerf2nerf.cli import demo
from relevance_nerf2nerf.errors import RelevanceError


@pytest.fixture
def user_files(tmp_path) -> Path:
    """An output folder already holding a user's files under the names the demo uses."""
    out = tmp_path / "p"
    for name in ("logs/keep", "scene/transforms.json", "runs/demo/notes.txt", "metrics.json", "after.gif"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"the user's {name}")
    return out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--instruction", "make the pyramid blue"], "names no object"),
        (["--instruction", "make the cylinder blue"], "no cylinder in it"),
        (["--instruction", " "], "instruction is empty"),
        (["--mask-threshold", "5"], "tau"),
        (["--text-guidance", "nan"], "text guidance"),
        (["--image-guidance", "-1"], "image guidance"),
        (["--width", "4"], "too small"),
        (["--width", "2000", "--height", "1000"], "--height"),
        (["--num-views", "1"], "--num-views"),
        (["--num-objects", "7"], "num_objects"),
        (["--base-iterations", "0"], "--base-iterations"),
        (["--edit-iterations", "-3"], "--edit-iterations"),
        (["--seed", "99999999999999999999"], "--seed"),
        (["--scene-seed", "-1"], "--scene-seed"),
        (["--editor-model", "./no-such-editor"], "--editor-model"),
        (["--edit-method", "nerfacto"], "--edit-method"),
    ],
)
def test_bad_settings_fail_in_one_line_before_touching_disk(user_files, capsys, flags, message):
    before = snapshot(user_files)
    assert demo.main(["--output-dir", str(user_files), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relevance-demo: error: ") and err.count("\n") == 1 and message in err
    assert snapshot(user_files) == before


@pytest.mark.parametrize("where", ["file", "inside_file"])
def test_output_dir_in_a_file_is_refused(tmp_path, capsys, where):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    out = afile if where == "file" else afile / "sub"
    assert demo.main(["--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output-dir" in err
    assert afile.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_each_run_writes_a_fresh_sub_folder_and_keeps_the_users_files(user_files, monkeypatch, capsys):
    """A run that fails after it started writing (here: ns-train) leaves every earlier file as it was."""

    def failing_train(args, total, description, log_path, progress):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("log")
        raise RelevanceError(f"{description} failed (exit code 1)")

    monkeypatch.setattr(demo, "run_ns_train", failing_train)
    before = snapshot(user_files)
    small = ["--num-views", "2", "--width", "16", "--height", "16"]
    for _ in range(2):
        assert demo.main(["--output-dir", str(user_files), *small]) == 2
    assert "failed" in capsys.readouterr().err
    after = snapshot(user_files)
    assert {k: v for k, v in after.items() if k in before} == before
    runs = sorted(p for p in user_files.iterdir() if p.is_dir() and p.name not in ("logs", "scene", "runs"))
    assert len(runs) == 2  # two runs, two fresh folders, each with its own scene and log
    for run in runs:
        assert (run / "scene" / "transforms.json").is_file() and (run / "logs" / "base.log").is_file()
