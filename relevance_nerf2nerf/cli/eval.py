"""``relevance-eval``: measure edits the way the paper does, and against ground truth when there is one.

``relevance-eval scene``: render the same cameras (dataset views or a viewer camera path) from an edited run
and from its unedited base, and compute CLIP text-image / directional / image similarity and frame / edit
consistency (Table 1), PSNR and SSIM outside the edited region (float), LPIPS when its weights are on this
machine, and, with a generated scene's ground-truth masks (``--scene``), the colour change of the target and
of every other object and the IoU of the rendered relevance mask with the target. Writes ``eval.json``,
``eval.md`` (a markdown table) and ``contact_sheet.png``::

    relevance-eval scene --edited-config outputs/bear/relevance-nerf2nerf/<ts>/config.yml \\
        --input-caption "a photo of a bear" --output-caption "a photo of a polar bear" --output-dir eval/bear

(``--base-config`` defaults to the run the edit started from, ``--pipeline.base-checkpoint``.)

``relevance-eval images``: over a folder of records, sweep tau and s_I and write CLIP directional similarity
vs CLIP image similarity for plain InstructPix2Pix (tau = 0) and relevance-guided editing (paper Fig. 4 / 13)
as ``sweep.json`` and ``sweep.png``. The folder holds ``records.jsonl``, one JSON object per line::

    {"image": "images/cat.png", "instruction": "make the cat a tiger",
     "input_caption": "a photo of a cat", "output_caption": "a photo of a tiger"}

(``image`` relative to the folder). Every input is checked before any model loads; the output folder must be
new and appears complete or not at all; errors are one line, exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.evaluation.clip import DEFAULT_CLIP
from relevance_nerf2nerf.outputs import check_new_output_dir, staged_output_dir

RECORD_FIELDS = ("image", "instruction", "input_caption", "output_caption")
NO_CLIP = "none"


@dataclass
class SceneEval:
    """Compare an edited scene with its unedited base on the same cameras."""

    edited_config: Path
    """config.yml of the edited run (relevance-nerf2nerf*, or any nerfstudio run)."""
    output_dir: Path
    """New folder for eval.json, eval.md and contact_sheet.png."""
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
class ImagesEval:
    """Sweep tau and s_I over image-edit records: CLIP directional vs image similarity (paper Fig. 4 / 13)."""

    records: Path
    """Folder holding records.jsonl (image, instruction, input_caption, output_caption per line)."""
    output_dir: Path
    """New folder for sweep.json and sweep.png."""
    editor_model: str = DEFAULT_MODEL
    """InstructPix2Pix hub id or local folder."""
    clip_model: str = DEFAULT_CLIP
    """CLIP hub id or local folder (save_pretrained)."""
    mask_thresholds: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
    """tau values; 0 is plain InstructPix2Pix."""
    image_guidances: tuple[float, ...] = (1.0, 1.2, 1.5, 1.8, 2.2)
    """s_I values (one point per value on every tau's curve)."""
    text_guidance: float = 7.5
    """s_T (7.5 in the paper's Fig. 4 / 13)."""
    steps: int = 100
    """DDIM steps per edit."""
    seed: int = 0
    """Seed of every edit (the same noise for every setting)."""
    limit: int | None = None
    """Use only the first N records."""
    device: str = "cpu"
    """Device of the editor and CLIP."""
    precision: Literal["fp32", "fp16"] = "fp32"
    """Precision of the editor."""


# --- scene ------------------------------------------------------------------------------------------------
def _read_run_config(path: Path):
    import yaml

    try:
        return yaml.load(path.read_text(), Loader=yaml.Loader)
    except Exception as err:  # noqa: BLE001 - any parse/import failure means the same thing to the user
        raise InvalidInputError(
            f"cannot read {path} as a nerfstudio config ({type(err).__name__}): pass the "
            "config.yml of an ns-train run"
        ) from err


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


def check_scene_inputs(command: SceneEval) -> tuple[Path, float]:
    """Every check of ``relevance-eval scene`` that needs no rendering; returns the base config and tau."""
    from relevance_nerf2nerf.evaluation.render import check_run_config

    check_run_config(command.edited_config, "--edited-config")
    edited = _read_run_config(command.edited_config)
    base_path = command.base_config or _base_config_of(edited, command.edited_config)
    check_run_config(base_path, "--base-config")
    if base_path.resolve() == command.edited_config.resolve():
        raise InvalidInputError(
            "--base-config is the edited run itself: pass the unedited base run's config.yml"
        )
    base = _read_run_config(base_path)
    data = [Path(c.pipeline.datamanager.data or "").resolve() for c in (edited, base)]
    if data[0] != data[1]:
        raise InvalidInputError(
            f"the edited run was trained on {data[0]} but the base on {data[1]}: compare "
            "runs of the same scene"
        )
    if command.clip_model != NO_CLIP:
        for name in ("input_caption", "output_caption"):
            if not (getattr(command, name) or "").strip():
                raise InvalidInputError(
                    f"--{name.replace('_', '-')} is missing: CLIP metrics need both captions "
                    f"(or pass --clip-model {NO_CLIP})"
                )
    if command.camera_path is not None:
        if not command.camera_path.is_file():
            raise InvalidInputError(f"--camera-path {command.camera_path} does not exist")
        if command.scene is not None:
            raise InvalidInputError(
                "ground-truth masks (--scene) exist only for dataset views: drop --camera-path"
            )
    if command.scene is not None and not (command.scene / "masks").is_dir():
        raise InvalidInputError(
            f"--scene {command.scene} has no masks/ folder: pass a scene written by relevance-scene"
        )
    tau = command.mask_threshold
    if tau is None:
        tau = float(getattr(edited.pipeline, "mask_threshold", 0.5))
    if not 0.0 <= tau <= 1.0:
        raise InvalidInputError(f"--mask-threshold must lie in [0, 1], got {tau}")
    check_new_output_dir(command.output_dir)
    return base_path, tau


def _instruction(config_path: Path) -> str:
    return str(getattr(_read_run_config(config_path).pipeline, "instruction", "") or "")


def evaluate_scene(command: SceneEval) -> dict:
    """Render both runs, measure, write eval.json / eval.md / contact_sheet.png; returns the record."""
    from relevance_nerf2nerf.evaluation import render
    from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth, target_of
    from relevance_nerf2nerf.evaluation.metrics import lpips_or_unavailable, psnr_outside, ssim_outside
    from relevance_nerf2nerf.evaluation.sheets import contact_sheet, heatmaps, rgb_rows

    base_path, tau = check_scene_inputs(command)
    instruction = _instruction(command.edited_config)
    renders = {}
    for name, config in (("before", base_path), ("after", command.edited_config)):
        pipeline = render.load_pipeline(config)
        if command.camera_path is not None:
            renders[name] = render.render_camera_path(pipeline, command.camera_path)
        else:
            renders[name] = render.render_dataset(pipeline, command.views)
        del pipeline
    before, after = renders["before"], renders["after"]
    if before.names != after.names or before.rgb.shape != after.rgb.shape:
        raise RelevanceError("the two runs rendered different views: were they trained on the same scene?")

    record: dict = {
        "edited_config": str(command.edited_config),
        "base_config": str(base_path),
        "instruction": instruction,
        "views": before.names,
        "mask_threshold": tau,
    }
    truth = None
    if command.scene is not None:
        truth = load_ground_truth(command.scene, before.names)
        target = command.target or target_of(instruction, list(truth.masks), "or pass --target")[0]
        colour = target_of(instruction, [target], "")[1] if instruction else None
        record["ground_truth"] = ground_truth_metrics(
            after.rgb, before.rgb, truth, target, colour, after.relevance, tau
        )
        region, region_name = truth.masks[target], f"ground-truth mask of the {target}"
    elif after.relevance is not None and tau > 0:
        region, region_name = after.relevance >= tau, f"rendered relevance >= {tau:g}"
    else:
        region, region_name = None, "none (whole image)"
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
        metrics["clip"] = "unavailable (--clip-model none)"
    record["metrics"] = metrics
    record["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()}

    rows = rgb_rows({"before": before.rgb, "after": after.rgb})
    if truth is not None and truth.images is not None:
        rows = {"ground truth": rgb_rows({"t": truth.images})["t"], **rows}
    if after.relevance is not None:
        rows["relevance"] = heatmaps(after.relevance)
        rows[f"mask tau={tau:g}"] = rgb_rows(
            {"m": (after.relevance >= tau).float()[..., None].repeat(1, 1, 1, 3)}
        )["m"]
    from PIL import Image

    with staged_output_dir(command.output_dir) as staging:
        Image.fromarray(contact_sheet(rows)).save(staging / "contact_sheet.png")
        (staging / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
        (staging / "eval.md").write_text(markdown_table(record))
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
    """The metrics of a ``relevance-eval scene`` record as a markdown table."""
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


# --- images -----------------------------------------------------------------------------------------------
def read_records(folder: Path, limit: int | None = None) -> list[dict]:
    """Read and check ``folder/records.jsonl``: every field present and non-empty, every image readable.

    Args:
        folder: the records folder.
        limit: keep only the first ``limit`` records.
    """
    from relevance_nerf2nerf.diffusion.images import load_image

    path = folder / "records.jsonl"
    if not path.is_file():
        raise InvalidInputError(
            f"{path} does not exist: write one JSON object per line with {', '.join(RECORD_FIELDS)}"
        )
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"{path} line {number} is not JSON ({err.msg})") from err
        missing = [f for f in RECORD_FIELDS if not str(record.get(f, "")).strip()]
        if missing:
            raise InvalidInputError(
                f"{path} line {number} has no {', '.join(missing)}: every record needs "
                f"{', '.join(RECORD_FIELDS)}"
            )
        record["image_tensor"] = load_image(folder / record["image"])
        records.append(record)
    if not records:
        raise InvalidInputError(f"{path} holds no records")
    return records[:limit] if limit is not None else records


def check_images_inputs(command: ImagesEval) -> list[dict]:
    """Every check of ``relevance-eval images`` before a model loads; returns the records."""
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings

    if not command.mask_thresholds or not command.image_guidances:
        raise InvalidInputError("--mask-thresholds and --image-guidances need at least one value each")
    for tau in command.mask_thresholds:
        for s_i in command.image_guidances:
            validate_edit_settings(
                "x",
                mask_threshold=tau,
                text_guidance=command.text_guidance,
                image_guidance=s_i,
                num_steps=command.steps,
            )
    if command.limit is not None and command.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    records = read_records(command.records, command.limit)
    check_new_output_dir(command.output_dir)
    return records


def evaluate_images(command: ImagesEval) -> dict:
    """Edit every record at every (tau, s_I); CLIP directional vs image similarity as JSON and a plot."""
    import torch
    from rich.progress import Progress

    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.evaluation.clip import ClipEmbedder, directional_similarity, image_similarity

    records = check_images_inputs(command)
    editor = load_editor(command.editor_model, device=command.device, precision=command.precision)
    clip = ClipEmbedder(command.clip_model, device=command.device)
    inputs = [clip.images(r["image_tensor"].permute(0, 2, 3, 1)) for r in records]
    captions = [clip.texts([r["input_caption"], r["output_caption"]]) for r in records]
    points = []
    start = time.perf_counter()
    total = len(command.mask_thresholds) * len(command.image_guidances) * len(records)
    with Progress() as progress:
        task = progress.add_task("edits", total=total)
        for tau in command.mask_thresholds:
            for s_i in command.image_guidances:
                directional, similarity = [], []
                for i, record in enumerate(records):
                    result = editor.edit(
                        record["image_tensor"],
                        record["instruction"],
                        mask_threshold=tau,
                        text_guidance=command.text_guidance,
                        image_guidance=s_i,
                        num_steps=command.steps,
                        generator=torch.Generator().manual_seed(command.seed + i),
                    )
                    edited = clip.images(result.image.permute(0, 2, 3, 1))
                    directional.append(directional_similarity(inputs[i], edited, *captions[i]))
                    similarity.append(image_similarity(inputs[i], edited))
                    progress.advance(task)
                points.append(
                    {
                        "mask_threshold": tau,
                        "image_guidance": s_i,
                        "clip_directional_similarity": sum(directional) / len(directional),
                        "clip_image_similarity": sum(similarity) / len(similarity),
                        "per_record_directional": directional,
                        "per_record_image": similarity,
                    }
                )
    result = {
        "editor_model": command.editor_model,
        "clip_model": command.clip_model,
        "num_records": len(records),
        "text_guidance": command.text_guidance,
        "steps": command.steps,
        "seed": command.seed,
        "points": points,
        "seconds": round(time.perf_counter() - start, 1),
    }
    with staged_output_dir(command.output_dir) as staging:
        (staging / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_sweep(points, staging / "sweep.png", title=f"{command.editor_model} / {command.clip_model}")
    return result


def plot_sweep(points: list[dict], path: Path, title: str = "") -> Path:
    """Fig. 4 / 13 style: one line per tau over s_I; x = CLIP directional, y = CLIP image similarity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4), dpi=120)
    for tau in sorted({p["mask_threshold"] for p in points}):
        line = sorted((p for p in points if p["mask_threshold"] == tau), key=lambda p: p["image_guidance"])
        x = [p["clip_directional_similarity"] for p in line]
        y = [p["clip_image_similarity"] for p in line]
        axis.plot(x, y, marker="o", label="InstructPix2Pix (tau 0)" if tau == 0 else f"ours, tau {tau:g}")
        for p in line:
            axis.annotate(
                f"{p['image_guidance']:g}",
                (p["clip_directional_similarity"], p["clip_image_similarity"]),
                fontsize=6,
            )
    axis.set_xlabel("CLIP text-image direction similarity")
    axis.set_ylabel("CLIP image similarity")
    axis.set_title(title, fontsize=7)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


# --- entry point ------------------------------------------------------------------------------------------
Command = (
    Annotated[SceneEval, tyro.conf.subcommand("scene")]
    | Annotated[ImagesEval, tyro.conf.subcommand("images")]
)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the sub-command, print where the outputs went; errors: one line, exit code 2."""
    command = tyro.cli(Command, args=argv)  # type: ignore[call-overload]
    try:
        if isinstance(command, SceneEval):
            record = evaluate_scene(command)
            print(markdown_table(record))
        else:
            evaluate_images(command)
    except RelevanceError as err:
        print(f"relevance-eval: error: {err}", file=sys.stderr)
        return 2
    print(f"outputs: {command.output_dir}")
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
