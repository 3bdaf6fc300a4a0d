"""Render the same cameras from trained nerfstudio runs (the demo, ``relevance-eval scene``, the benchmark).

nerfstudio is imported only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError

Views = Literal["all", "train", "eval"]


@dataclass
class Renders:
    """Renders of a list of cameras, on the CPU."""

    names: list[str]
    """One name per camera: the frame's file name for dataset views, ``path_00000`` for a camera path."""
    rgb: torch.Tensor
    """(V, H, W, 3) in [0, 1]."""
    relevance: torch.Tensor | None
    """(V, H, W) in [0, 1], when the model renders relevance."""


def check_run_config(config: Path, what: str) -> None:
    """Refuse (one line) a ``config.yml`` that does not exist or has no checkpoint beside it.

    Args:
        config (Path): path of a run's ``config.yml``.
        what (str): how the user called it (e.g. ``--base-config``), for the message.
    """
    if not config.is_file():
        raise InvalidInputError(
            f"{what} {config} does not exist: pass the config.yml of a finished ns-train run"
        )
    if config.suffix not in (".yml", ".yaml"):
        raise InvalidInputError(
            f"{what} {config} is not a config.yml: pass the config.yml of an ns-train run"
        )
    if not any((config.parent / "nerfstudio_models").glob("step-*.ckpt")):
        raise InvalidInputError(
            f"{what} {config}: its run has no checkpoint ({config.parent / 'nerfstudio_models'} is empty or "
            "missing); train it first"
        )


def load_pipeline(config: Path):
    """The trained pipeline of a run (nerfstudio's ``eval_setup``; our checkpoints load on torch >= 2.6).

    Args:
        config (Path): the run's config.yml.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    from relevance_nerf2nerf.nerf.checkpoints import allow_numpy_in_checkpoints

    allow_numpy_in_checkpoints()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return eval_setup(config, test_mode="test")[1]
    except RelevanceError:
        raise
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise RelevanceError(
            f"cannot load the run of {config} ({type(err).__name__}: {first}): its checkpoint does not fit "
            "its config.yml or dataset (was the dataset replaced?); train the run again"
        ) from err


def render_cameras(pipeline, cameras: list, names: list[str]) -> Renders:
    """Render ``cameras`` (a list of single nerfstudio cameras) with the pipeline's model in eval mode.

    Args:
        pipeline (Pipeline): a loaded pipeline (:func:`load_pipeline`).
        cameras (list): single nerfstudio cameras.
        names (list[str]): one name per camera.
    """
    rgb, relevance = [], []
    pipeline.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nerfstudio's indexing deprecation warnings, once per camera
        for camera in cameras:
            outputs = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))
            rgb.append(outputs["rgb"].clamp(0, 1).cpu())
            if "relevance" in outputs:
                relevance.append(outputs["relevance"][..., 0].clamp(0, 1).cpu())
    return Renders(names, torch.stack(rgb), torch.stack(relevance) if relevance else None)


def render_dataset(pipeline, views: Views = "all") -> Renders:
    """Render the dataset views ``views`` of a loaded pipeline, in frame-name order.

    Args:
        pipeline (Pipeline): a nerfstudio pipeline (from :func:`load_pipeline` or a trainer).
        views (Views, default 'all'): ``all`` (train and eval split), ``train`` or ``eval``.
    """
    datamanager = pipeline.datamanager
    datasets = {"train": [datamanager.train_dataset], "eval": [datamanager.eval_dataset]}
    found: dict[str, object] = {}
    for dataset in datasets.get(views, [datamanager.train_dataset, datamanager.eval_dataset]):
        for i, name in enumerate(dataset._dataparser_outputs.image_filenames):
            found.setdefault(Path(name).name, dataset.cameras[i : i + 1])
    names = sorted(found)
    if not names:
        raise InvalidInputError(f"the run has no {views} views to render: pass --views all")
    return render_cameras(pipeline, [found[name] for name in names], names)


def read_camera_path(camera_path: Path):
    """The cameras of a ``camera_path.json`` written by the nerfstudio viewer; refuses (one line) a file that
    is missing, not JSON, not a camera path or holds no camera. Needs no model.

    Args:
        camera_path (Path): the file.
    """
    import json

    from nerfstudio.cameras.camera_paths import get_path_from_json

    advice = "pass a camera_path.json exported by the nerfstudio viewer"
    if not camera_path.is_file():
        raise InvalidInputError(f"--camera-path {camera_path} does not exist: {advice}")
    try:
        data = json.loads(camera_path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidInputError(
            f"--camera-path {camera_path} is not JSON ({type(err).__name__}): {advice}"
        ) from err
    keyframes = data.get("camera_path") if isinstance(data, dict) else None
    if not isinstance(keyframes, list) or not keyframes:
        raise InvalidInputError(
            f"--camera-path {camera_path} holds no cameras (its camera_path list is empty or missing): "
            f"{advice}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_path_from_json(data)
    except Exception as err:  # noqa: BLE001 - KeyError, TypeError, ValueError, RuntimeError for odd entries
        raise InvalidInputError(
            f"cannot read camera path {camera_path} ({type(err).__name__}: {err}): {advice}"
        ) from err


def render_camera_path(pipeline, camera_path: Path) -> Renders:
    """Render a camera path written by the nerfstudio viewer (``camera_path.json``).

    Args:
        pipeline (Pipeline): a nerfstudio pipeline (from :func:`load_pipeline` or a trainer).
        camera_path (Path): the file (:func:`read_camera_path`).
    """
    cameras = read_camera_path(camera_path)
    names = [f"path_{i:05d}" for i in range(len(cameras))]
    return render_cameras(pipeline, [cameras[i : i + 1] for i in range(len(cameras))], names)
