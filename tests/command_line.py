"""The installed command-line tools (``ns-train``, ``ns-render``) run from tests as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
"""The environment's scripts folder (``ns-train``, ``ns-render``, ``relevance-*``)."""


def tool_env() -> dict[str, str]:
    """The test process's environment with one thread per process and no model hub."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_tool(tool: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``BIN/tool args...``; a non-zero exit fails the test with the tail of its output.

    Args:
        tool (str): the script's name, e.g. ``ns-train``.
        *args (str | Path): its arguments.
        env (dict[str, str] | None, default None): its environment; None: :func:`tool_env`.
    """
    command = [str(BIN / tool), *map(str, args)]
    result = subprocess.run(command, env=env or tool_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{tool} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def render_rgb_and_relevance(
    run: Path, output: Path, env: dict[str, str] | None = None
) -> dict[str, list[Path]]:
    """``ns-render dataset`` of a run's training views from its ``config.yml``, RGB and relevance; returns
    each output's frames, sorted by name.

    Args:
        run (Path): the run folder (holds ``config.yml``).
        output (Path): ``--output-path``; the frames land in ``output/train/<rgb|relevance>``.
        env (dict[str, str] | None, default None): ns-render's environment; None: :func:`tool_env`.
    """
    run_tool(
        "ns-render", "dataset", "--load-config", run / "config.yml", "--output-path", output,
        "--split", "train", "--rendered-output-names", "rgb", "relevance", env=env,
    )  # fmt: skip
    return {name: sorted((output / "train" / name).glob("*")) for name in ("rgb", "relevance")}
