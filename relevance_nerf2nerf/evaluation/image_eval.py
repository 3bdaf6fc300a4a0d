"""``relevance-eval images``: sweep tau and s_I over image-edit records and plot CLIP directional vs image
similarity for plain InstructPix2Pix (tau = 0) and relevance-guided editing (paper Fig. 4 / 13).

The records folder holds ``records.jsonl``, one JSON object per line with ``image`` (relative to the folder),
``instruction``, ``input_caption`` and ``output_caption``. :func:`check_images_inputs` checks every record,
every setting, both models' references and the output folder before a model loads; :func:`evaluate_images`
then edits every record at every setting and writes ``sweep.json`` and ``sweep.png`` whole or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.evaluation.clip import DEFAULT_CLIP, NO_CLIP
from relevance_nerf2nerf.outputs import check_new_output_dir, staged_output_dir

RECORD_FIELDS = ("image", "instruction", "input_caption", "output_caption")
"""The fields of every line of ``records.jsonl``, all texts."""


@dataclass
class ImagesEval:
    """Sweep tau and s_I over image-edit records: CLIP directional vs image similarity (paper Fig. 4 / 13)."""

    records: Path
    """Folder holding records.jsonl (image, instruction, input_caption, output_caption per line)."""
    output_dir: Path
    """New folder for sweep.json and sweep.png (an existing folder must be empty)."""
    editor_model: str = DEFAULT_MODEL
    """InstructPix2Pix hub id or local folder."""
    clip_model: str = DEFAULT_CLIP
    """CLIP hub id or local folder (save_pretrained); the sweep needs CLIP ('none' is refused)."""
    mask_thresholds: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)
    """tau values; 0 is plain InstructPix2Pix."""
    image_guidances: tuple[float, ...] = (1.0, 1.2, 1.5, 1.8, 2.2)
    """s_I values (one point per value on every tau's curve)."""
    text_guidance: float = DEFAULTS.text_guidance
    """s_T (7.5 in the paper's Fig. 4 / 13)."""
    steps: int = DEFAULTS.num_steps
    """DDIM steps per edit."""
    seed: int = 0
    """Seed of every edit (the same noise for every setting)."""
    limit: int | None = None
    """Use only the first N records."""
    device: str = "cpu"
    """Device of the editor and CLIP."""
    precision: Literal["fp32", "fp16"] = "fp32"
    """Precision of the editor."""


def _parse_record(line: str, where: str) -> dict:
    """One line of ``records.jsonl`` as a record whose fields are all non-empty texts."""
    from relevance_nerf2nerf.diffusion.settings import check_instruction
    from relevance_nerf2nerf.evaluation.clip import check_caption

    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{where} is not JSON ({err.msg})") from err
    fields = ", ".join(RECORD_FIELDS)
    if not isinstance(record, dict):
        raise InvalidInputError(
            f"{where} is a JSON {type(record).__name__}, not an object: write one object per line with "
            f"{fields}"
        )
    missing = [f for f in RECORD_FIELDS if record.get(f) is None or record.get(f) == ""]
    if missing:
        raise InvalidInputError(f"{where} has no {', '.join(missing)}: every record needs {fields}")
    if not isinstance(record["image"], str) or not record["image"].strip():
        raise InvalidInputError(f"{where}: image must be a path text relative to the records folder")
    check_instruction(record["instruction"], f"{where}: instruction")
    for name in ("input_caption", "output_caption"):
        check_caption(record[name], f"{where}: {name}")
    return record


def read_records(folder: Path, limit: int | None = None) -> list[dict]:
    """Read and check ``folder/records.jsonl``: every line a JSON object whose fields are non-empty texts,
    every image readable (loaded into ``image_tensor``).

    Args:
        folder (Path): the records folder.
        limit (int | None, default None): keep only the first ``limit`` records.
    """
    from relevance_nerf2nerf.diffusion.images import load_image

    path = folder / "records.jsonl"
    if folder.is_file():
        raise InvalidInputError(f"--records {folder} is a file: pass the folder that holds records.jsonl")
    if not path.is_file():
        raise InvalidInputError(
            f"{path} does not exist: write one JSON object per line with {', '.join(RECORD_FIELDS)}"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(
            f"{path} is not a UTF-8 text file ({type(err).__name__}): write one JSON object per line"
        ) from err
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            records.append(_parse_record(line, f"{path} line {number}"))
    if not records:
        raise InvalidInputError(f"{path} holds no records")
    records = records[:limit] if limit is not None else records
    for record in records:
        record["image_tensor"] = load_image(folder / record["image"])
    return records


def check_images_inputs(command: ImagesEval) -> list[dict]:
    """Every check of ``relevance-eval images`` before a model loads; returns the records.

    Args:
        command (ImagesEval): the parsed command line.
    """
    from relevance_nerf2nerf.diffusion.settings import EditSettings, check_editor_model
    from relevance_nerf2nerf.evaluation.clip import check_clip_model

    if not command.mask_thresholds or not command.image_guidances:
        raise InvalidInputError("--mask-thresholds and --image-guidances need at least one value each")
    flags = {"mask_threshold": "--mask-thresholds", "image_guidance": "--image-guidances",
             "text_guidance": "--text-guidance", "num_steps": "--steps"}  # fmt: skip
    for tau in command.mask_thresholds:
        for s_i in command.image_guidances:
            EditSettings(
                instruction="x", mask_threshold=tau, text_guidance=command.text_guidance,
                image_guidance=s_i, num_steps=command.steps,
            ).validate(flags)  # fmt: skip
    if command.limit is not None and command.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    if command.clip_model == NO_CLIP:
        raise InvalidInputError(
            f"--clip-model {NO_CLIP}: the images sweep measures with CLIP; pass a CLIP hub id or local folder"
        )
    records = read_records(command.records, command.limit)
    check_clip_model(command.clip_model)
    check_editor_model(command.editor_model)
    check_new_output_dir(command.output_dir)
    return records


def sweep(command: ImagesEval, records: list[dict], editor, clip) -> list[dict]:
    """Edit every record at every (tau, s_I); one point per setting with the mean CLIP similarities.

    Args:
        command (ImagesEval): the parsed command line (settings, seed).
        records (list[dict]): the checked records (:func:`read_records`).
        editor (RelevanceEditor): the loaded editor.
        clip (ClipEmbedder): the loaded CLIP model.
    """
    import torch
    from rich.progress import Progress

    from relevance_nerf2nerf.evaluation.clip import directional_similarity, image_similarity

    inputs = [clip.images(r["image_tensor"].permute(0, 2, 3, 1)) for r in records]
    captions = [clip.texts([r["input_caption"], r["output_caption"]]) for r in records]
    points = []
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
    return points


def evaluate_images(command: ImagesEval) -> dict:
    """Check every input, load the editor and CLIP, sweep, write ``sweep.json`` and ``sweep.png``.

    Args:
        command (ImagesEval): the parsed command line.

    Returns the record written to ``sweep.json``.
    """
    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.evaluation.clip import ClipEmbedder

    records = check_images_inputs(command)
    editor = load_editor(command.editor_model, device=command.device, precision=command.precision)
    clip = ClipEmbedder(command.clip_model, device=command.device)
    start = time.perf_counter()
    points = sweep(command, records, editor, clip)
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
    """Fig. 4 / 13 style: one line per tau over s_I; x = CLIP directional, y = CLIP image similarity.

    Args:
        points (list[dict]): the sweep's points (:func:`sweep`).
        path (Path): the PNG to write.
        title (str, default ""): the plot's title.
    """
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
