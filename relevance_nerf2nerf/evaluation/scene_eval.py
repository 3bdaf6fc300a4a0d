"""``relevance-eval scene``: an edited run against its unedited base, rendered from the same cameras.

Every input is checked by :func:`check_scene_inputs` before a model loads or anything is rendered: both
``config.yml`` files (readable, whole, of an ns-train run with a checkpoint, trained on the same data),
the views asked for (``--views eval`` needs eval views), the camera path, the ground-truth scene and its
target, the CLIP model, the editor a comparison region needs and the output folder. :func:`evaluate_scene`
then renders both runs, measures (CLIP similarities, PSNR / SSIM outside the edit, LPIPS, ground truth) and
writes ``eval.json``, ``eval.md`` and ``contact_sheet.png`` into a new folder, whole or not at all.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.evaluation.clip import DEFAULT_CLIP, NO_CLIP, check_clip_model
from relevance_nerf2nerf.outputs import check_new_output_dir, staged_output_dir


@dataclass
class SceneEval:
    """Compare an edited scene with its unedited base on the same cameras."""

    edited_config: Path
    """config.yml of the edited run (relevance-nerf2nerf*, or any nerfstudio run)."""
    output_dir: Path
    """New folder for eval.json, eval.md and contact_sheet.png (an existing folder must be empty)."""
    base_config: Path | None = None
    """config.yml of the unedited base run (default: the run of the edit's --pipeline.base-checkpoint)."""
    views: Literal["all", "train", "eval"] = "all"
    """Dataset views to render (in frame-name order)."""
    camera_path: Path | None = None
    """A camera_path.json from the nerfstudio viewer, rendered instead of the dataset views."""
    scene: Path | None = None
    """Ground truth: a scene folder with masks/<object>/<frame>.png (as relevance-scene writes)."""
    target: str | None = None
    """Ground-truth object the edit is about (default: the object the edit's instruction names)."""
    mask_threshold: float | None = None
    """tau for the rendered relevance mask (default: the edited run's --pipeline.mask-threshold, else 0.5)."""
    input_caption: str | None = None
    """Caption of the unedited scene (needed for the CLIP metrics)."""
    output_caption: str | None = None
    """Caption of the edited scene (needed for the CLIP metrics)."""
    clip_model: str = DEFAULT_CLIP
    """CLIP hub id or local folder (save_pretrained); 'none' skips the CLIP metrics."""
    device: str = "cpu"
    """Device of the CLIP model."""


@dataclass
class SceneInputs:
    """What :func:`check_scene_inputs` established, for :func:`evaluate_scene`."""

    edited: Any
    """The edited run's loaded config (a nerfstudio ``TrainerConfig``)."""
    base_path: Path
    """config.yml of the base run."""
    tau: float
    """Threshold of the rendered relevance mask."""
    instruction: str
    """The edited run's instruction ('' for a run without one)."""
    target: str | None
    """The ground-truth object the edit is about (None without --scene)."""


# --- run configs ------------------------------------------------------------------------------------------
def _missing_field(config: Any, prefix: str = "") -> str | None:
    """The first dataclass field (dotted path) a loaded config lacks, e.g. where a cut file ended."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    for item in dataclasses.fields(config):
        if not hasattr(config, item.name):
            return prefix + item.name
        found = _missing_field(getattr(config, item.name), f"{prefix}{item.name}.")
        if found is not None:
            return found
    return None


def read_run_config(path: Path, flag: str):
    """Load a run's ``config.yml`` and refuse (one line naming ``flag``) anything but a whole ns-train config
    with a checkpoint beside it: a missing, empty, unparsable, foreign or cut-short file.

    Args:
        path (Path): the ``config.yml``.
        flag (str): the option that named it (``--edited-config``, ``--base-config``), for the message.

    Returns the loaded nerfstudio ``TrainerConfig``.
    """
    import yaml
    from nerfstudio.configs.base_config import InstantiateConfig
    from nerfstudio.engine.trainer import TrainerConfig

    from relevance_nerf2nerf.evaluation.render import check_run_config

    check_run_config(path, flag)
    advice = "pass the config.yml an ns-train run wrote"
    try:
        config = yaml.load(path.read_text(), Loader=yaml.Loader)
    except Exception as err:  # noqa: BLE001 - any parse/import/decoding failure means the same to the user
        raise InvalidInputError(
            f"{flag} {path} cannot be read as a nerfstudio config ({type(err).__name__}): {advice}"
        ) from err
    if not isinstance(config, TrainerConfig):
        what = "is empty" if config is None else f"holds a {type(config).__name__}, not a run's settings"
        raise InvalidInputError(f"{flag} {path} {what}: {advice}")
    missing = _missing_field(config)
    pipeline = getattr(config, "pipeline", None)
    datamanager = getattr(pipeline, "datamanager", None)
    parts = (pipeline, datamanager, getattr(pipeline, "model", None))
    if missing is None and not all(isinstance(part, InstantiateConfig) for part in parts):
        missing = "pipeline"
    if missing is not None:
        raise InvalidInputError(
            f"{flag} {path} is incomplete or damaged ({missing!r} missing or invalid; cut short?): {advice}"
        )
    data = getattr(datamanager, "data", None)
    if data is None or not Path(data).exists():
        raise InvalidInputError(
            f"{flag} {path}: the run's data {data} does not exist: put the dataset back where it was trained"
        )
    return config


def _base_config_of(edited, edited_path: Path) -> Path:
    from relevance_nerf2nerf.nerf.checkpoints import resolve_checkpoint

    base = getattr(edited.pipeline, "base_checkpoint", None)
    load_dir = getattr(edited, "load_dir", None)  # IN2N's habit: --load-dir <base run>/nerfstudio_models
    if base is None and load_dir is not None:
        loaded_run = Path(load_dir).parent
        base = loaded_run if loaded_run.resolve() != edited_path.parent.resolve() else None
    if base is None:
        raise InvalidInputError(
            f"{edited_path} names no base run (no --pipeline.base-checkpoint or --load-dir): pass "
            "--base-config with the config.yml of the unedited run"
        )
    checkpoint = resolve_checkpoint(Path(base))
    config = checkpoint.parent.parent / "config.yml"
    if not config.is_file():
        raise InvalidInputError(
            f"the edit's base run has no config.yml beside {checkpoint.parent}: pass "
            "--base-config with the config.yml of the unedited run"
        )
    return config


def count_eval_views(config) -> int:
    """How many eval views the run's dataset has (nerfstudio's ``test`` split, read from the dataparser
    without loading images).

    Args:
        config (TrainerConfig): a loaded run config (:func:`read_run_config`).
    """
    dataparser = copy.deepcopy(config.pipeline.datamanager.dataparser)
    dataparser.data = Path(config.pipeline.datamanager.data)
    try:
        return len(dataparser.setup().get_dataparser_outputs(split="test").image_filenames)
    except Exception as err:  # noqa: BLE001 - the dataparsers raise many types for an unreadable dataset
        raise InvalidInputError(
            f"cannot read the run's dataset {dataparser.data} ({type(err).__name__}): put the dataset the "
            "run was trained on back in place"
        ) from err


# --- inputs -----------------------------------------------------------------------------------------------
def _check_captions(command: SceneEval) -> None:
    from relevance_nerf2nerf.evaluation.clip import check_caption

    if command.clip_model == NO_CLIP:
        return
    for name in ("input_caption", "output_caption"):
        value = getattr(command, name)
        flag = f"--{name.replace('_', '-')}"
        if value is None or not value.strip():
            raise InvalidInputError(
                f"{flag} is missing: CLIP metrics need both captions (or pass --clip-model {NO_CLIP})"
            )
        check_caption(value, flag)
    check_clip_model(command.clip_model)


def _check_views(command: SceneEval, edited) -> None:
    if command.camera_path is not None:
        from relevance_nerf2nerf.evaluation.render import read_camera_path

        if command.scene is not None:
            raise InvalidInputError(
                "ground-truth masks (--scene) exist only for dataset views: drop --camera-path"
            )
        read_camera_path(command.camera_path)
    elif command.views == "eval" and count_eval_views(edited) == 0:
        raise InvalidInputError(
            f"the run's dataset {edited.pipeline.datamanager.data} has no eval views: pass --views train or "
            "--views all"
        )


def _check_target(command: SceneEval, instruction: str) -> str | None:
    """The ground-truth object to measure (None without --scene), checked against the scene's masks."""
    from relevance_nerf2nerf.evaluation.ground_truth import target_of

    if command.scene is None:
        if command.target is not None:
            raise InvalidInputError("--target names a ground-truth object: pass --scene with it")
        return None
    masks = command.scene / "masks"
    objects = sorted(p.name for p in masks.glob("*") if p.is_dir()) if masks.is_dir() else []
    if not objects:
        raise InvalidInputError(
            f"--scene {command.scene} has no masks/<object>/ folders: pass a scene written by relevance-scene"
        )
    if command.target is not None:
        if command.target not in objects:
            raise InvalidInputError(
                f"--target {command.target} is not an object of --scene {command.scene}: name one of "
                f"{', '.join(objects)}"
            )
        return command.target
    if not instruction.strip():
        raise InvalidInputError(
            "the edited run has no instruction to find the target in: pass --target (one of "
            f"{', '.join(objects)})"
        )
    return target_of(instruction, objects, "or pass --target")[0]


def _check_region_editor(command: SceneEval, edited) -> None:
    """The comparison region without ground truth loads the edited run's editor: check it can."""
    from relevance_nerf2nerf.diffusion.settings import check_editor_model

    instruction = str(getattr(edited.pipeline, "instruction", "") or "")
    if command.scene is None and instruction.strip() and hasattr(edited.pipeline, "editor_model"):
        check_editor_model(str(edited.pipeline.editor_model), "the edited run's --pipeline.editor-model")


def check_scene_inputs(command: SceneEval) -> SceneInputs:
    """Every check of ``relevance-eval scene`` that needs no model and no rendering.

    Args:
        command (SceneEval): the parsed command line.

    Returns what the checks established (:class:`SceneInputs`).
    """
    edited = read_run_config(command.edited_config, "--edited-config")
    if command.base_config is not None:
        base_path = command.base_config
        flag = "--base-config"
    else:
        base_path, flag = _base_config_of(edited, command.edited_config), "the edit's base run"
    if base_path.resolve() == command.edited_config.resolve():
        raise InvalidInputError(
            "--base-config is the edited run itself: pass the unedited base run's config.yml"
        )
    base = read_run_config(base_path, flag)
    data = [Path(c.pipeline.datamanager.data or "").resolve() for c in (edited, base)]
    if data[0] != data[1]:
        raise InvalidInputError(
            f"the edited run was trained on {data[0]} but the base on {data[1]}: compare "
            "runs of the same scene"
        )
    tau = command.mask_threshold
    if tau is None:
        tau = float(getattr(edited.pipeline, "mask_threshold", 0.5))
    if not 0.0 <= tau <= 1.0:
        raise InvalidInputError(f"--mask-threshold must lie in [0, 1], got {tau}")
    instruction = str(getattr(edited.pipeline, "instruction", "") or "")
    _check_views(command, edited)
    target = _check_target(command, instruction)
    _check_captions(command)
    _check_region_editor(command, edited)
    check_new_output_dir(command.output_dir)
    return SceneInputs(edited, base_path, tau, instruction, target)


# --- work -------------------------------------------------------------------------------------------------
def render_runs(command: SceneEval, base_path: Path) -> tuple:
    """Render the base (``before``) and the edited run (``after``) at the same cameras, one run at a time.

    Args:
        command (SceneEval): the parsed command line (cameras: ``--camera-path`` or ``--views``).
        base_path (Path): config.yml of the base run.
    """
    from relevance_nerf2nerf.evaluation import render

    renders = []
    for config in (base_path, command.edited_config):
        pipeline = render.load_pipeline(config)
        if command.camera_path is not None:
            renders.append(render.render_camera_path(pipeline, command.camera_path))
        else:
            renders.append(render.render_dataset(pipeline, command.views))
        del pipeline
    before, after = renders
    if before.names != after.names or before.rgb.shape != after.rgb.shape:
        raise RelevanceError("the two runs rendered different views: were they trained on the same scene?")
    return before, after


def scene_metrics(command: SceneEval, inputs: SceneInputs, before, after, truth) -> dict:
    """The metrics of the edit: PSNR / SSIM outside the compared region, whole-image PSNR, LPIPS, CLIP.

    Args:
        command (SceneEval): the parsed command line.
        inputs (SceneInputs): the checked inputs.
        before (Renders): the base's renders.
        after (Renders): the edited run's renders.
        truth (GroundTruth | None): the scene's ground truth, if any.
    """
    from relevance_nerf2nerf.evaluation.metrics import lpips_or_unavailable, psnr_outside, ssim_outside
    from relevance_nerf2nerf.evaluation.regions import region_of_run

    ground_truth = truth.masks[inputs.target] if truth is not None else None
    if ground_truth is not None:
        region, region_name = ground_truth, f"ground-truth mask of the {inputs.target}"
    else:  # one region for every compared run: the base's relevance (evaluation.regions)
        region, region_name = region_of_run(inputs.edited.pipeline, before.rgb, None, command.device)
    metrics: dict = {
        "excluded_region": region_name,
        "psnr_outside_edit": psnr_outside(after.rgb, before.rgb, region),
        "ssim_outside_edit": ssim_outside(after.rgb, before.rgb, region),
        "psnr_whole_image": psnr_outside(after.rgb, before.rgb, None),
        "lpips_whole_image": lpips_or_unavailable(after.rgb, before.rgb),
    }
    if command.clip_model != NO_CLIP:
        from relevance_nerf2nerf.evaluation.clip import ClipEmbedder, clip_metrics

        clip = ClipEmbedder(command.clip_model, device=command.device)
        assert command.input_caption and command.output_caption
        metrics.update(
            clip_metrics(clip, before.rgb, after.rgb, command.input_caption, command.output_caption)
        )
    else:
        metrics["clip"] = f"unavailable (--clip-model {NO_CLIP})"
    return metrics


def sheet_rows(before, after, truth, tau: float) -> dict:
    """The contact sheet's rows: ground truth (if any), before, after, relevance and its mask (if any).

    Args:
        before (Renders): renders of the base run.
        after (Renders): renders of the edited run.
        truth (GroundTruth | None): the generated scene's ground truth, if any.
        tau (float): mask threshold of the mask row.
    """
    from relevance_nerf2nerf.evaluation.sheets import heatmaps, rgb_rows

    rows = rgb_rows({"before": before.rgb, "after": after.rgb})
    if truth is not None and truth.images is not None:
        rows = {"ground truth": rgb_rows({"t": truth.images})["t"], **rows}
    if after.relevance is not None:
        rows["relevance"] = heatmaps(after.relevance)
        mask = (after.relevance >= tau).float()[..., None].repeat(1, 1, 1, 3)
        rows[f"mask tau={tau:g}"] = rgb_rows({"m": mask})["m"]
    return rows


def write_scene_outputs(output_dir: Path, record: dict, rows: dict) -> None:
    """``contact_sheet.png``, ``eval.json`` and ``eval.md`` into ``output_dir``, whole or not at all.

    Args:
        output_dir (Path): the new output folder.
        record (dict): the eval.json record.
        rows (dict): contact sheet rows (:func:`sheet_rows`).
    """
    from PIL import Image

    from relevance_nerf2nerf.evaluation.sheets import contact_sheet

    with staged_output_dir(output_dir) as staging:
        Image.fromarray(contact_sheet(rows)).save(staging / "contact_sheet.png")
        (staging / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
        (staging / "eval.md").write_text(markdown_table(record))


def _target_colour(instruction: str, target: str) -> str | None:
    """The colour the instruction asks for when it names ``target`` (None otherwise)."""
    from relevance_nerf2nerf.evaluation.ground_truth import target_of

    try:
        return target_of(instruction, [target], "")[1]
    except InvalidInputError:  # the instruction names another object (or none): no colour to check
        return None


def evaluate_scene(command: SceneEval) -> dict:
    """Check every input, render both runs, measure, write eval.json / eval.md / contact_sheet.png.

    Args:
        command (SceneEval): the parsed command line.

    Returns the record written to ``eval.json``.
    """
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth

    inputs = check_scene_inputs(command)
    before, after = render_runs(command, inputs.base_path)
    record: dict = {
        "edited_config": str(command.edited_config),
        "base_config": str(inputs.base_path),
        "instruction": inputs.instruction,
        "views": before.names,
        "mask_threshold": inputs.tau,
    }
    truth = None
    if command.scene is not None:
        assert inputs.target is not None
        truth = load_ground_truth(command.scene, before.names)
        colour = _target_colour(inputs.instruction, inputs.target)
        record["ground_truth"] = ground_truth_metrics(
            after.rgb, before.rgb, truth, inputs.target, colour, after.relevance, inputs.tau
        )
    record["metrics"] = scene_metrics(command, inputs, before, after, truth)
    record["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()}
    write_scene_outputs(command.output_dir, record, sheet_rows(before, after, truth, inputs.tau))
    return record


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def markdown_table(record: dict) -> str:
    """The metrics of a ``relevance-eval scene`` record as a markdown table.

    Args:
        record (dict): what :func:`evaluate_scene` returned.
    """
    lines = [
        f"# relevance-eval scene: {record['instruction']!r}",
        "",
        f"edited `{record['edited_config']}` vs base `{record['base_config']}`, {len(record['views'])} views",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for section in ("metrics", "ground_truth"):
        for key, value in record.get(section, {}).items():
            lines.append(f"| {key} | {_format(value)} |")
    return "\n".join(lines) + "\n"

