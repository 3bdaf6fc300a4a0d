"""What the repository ships reads as a manual: no development history in code, docs, tests, benchmarks or
results; the installed package carries only what the toy editor's loader needs; results files record paths
relative to the repository; every method's description says whether it is a CPU or a GPU preset."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from nerfstudio.plugins.types import MethodSpecification

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR

ROOT = Path(__file__).resolve().parents[1]

HISTORY = re.compile(
    r"\bissue\s*#?\d|\bissues?\s+\d|\bdefects?\s+\d|\b(earlier|previous|last|this|two|three)\s+rounds?\b"
    r"|\bround\s+\d|\bbudget\b|\bprevious\s+editor\b|\bbefore\s+issue\b|\bno\s+GPU\s+was\s+lent\b"
    r"|\bno\b[^.]{0,40}\bon\s+this\s+machine\b|\bthe\s+session\b",
    re.IGNORECASE,
)
"""Wording of a lab notebook: issue and defect numbers, rounds, budgets, comparisons with earlier versions,
remarks on the machines or sessions the work was done in."""

SHIPPED_SUFFIXES = {".py", ".md", ".json", ".toml", ".txt", ".yml", ".yaml"}


def _shipped_files() -> list[Path]:
    roots = ["relevance_nerf2nerf", "method_configs", "tests", "benchmarks", "docs"]
    files = [p for root in roots for p in (ROOT / root).rglob("*") if p.suffix in SHIPPED_SUFFIXES]
    files += [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "Makefile"]
    this = Path(__file__).resolve()
    return [p for p in files if p.is_file() and p != this and "__pycache__" not in p.parts]


def test_no_development_history_in_shipped_files():
    hits = []
    for path in _shipped_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if match := HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r} in {line.strip()[:90]}")
    assert not hits, "development history in shipped text:\n" + "\n".join(hits)


def test_history_pattern_catches_notebook_wording_and_spares_plain_words():
    notebook = ["Issue 9, defect 2", "the previous editor's ratio", "past its 15-minute budget",
                "issue 8's goal", "No GPU was lent", "the earlier rounds",
                "no real weights on this machine"]  # fmt: skip
    manual = ["values are rounded to 8 bits", "round-to-nearest", "a previous checkpoint", "issue a warning",
              "timings measured on this machine"]  # fmt: skip
    assert all(HISTORY.search(text) for text in notebook)
    assert not any(HISTORY.search(text) for text in manual)


def test_installed_toy_editor_holds_only_what_the_loader_reads():
    """Training logs, summaries and the evaluation record live in the repository's toy_editor_training/."""
    loader_files = {"model_index.json", "relevance_settings.json", "scheduler", "text_encoder", "tokenizer",
                    "unet", "vae"}  # fmt: skip
    assert {p.name for p in TOY_EDITOR_DIR.iterdir()} <= loader_files
    assert {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= {
        p.name for p in TOY_EDITOR_DIR.iterdir()
    }
    assert (ROOT / "toy_editor_training" / "evaluation.json").is_file()


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_results_files_record_repository_relative_paths():
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        absolute = [s for s in _strings(json.loads(path.read_text())) if re.match(r"^(/|[A-Za-z]:\\)\S+$", s)]
        assert not absolute, f"{path.name} records absolute paths: {absolute[:3]}"


def test_every_method_description_says_cpu_or_gpu_preset():
    """``relevance-nerf2nerf-tiny`` runs on a CPU, while Instruct-NeRF2NeRF's ``in2n-tiny`` is a small-GPU
    preset: ``ns-train --help`` must tell them apart."""
    files = (ROOT / "method_configs").glob("[!_]*.py")
    modules = [importlib.import_module(f"method_configs.{path.stem}") for path in files]
    specs = [v for module in modules for v in vars(module).values() if isinstance(v, MethodSpecification)]
    assert len(specs) >= 4
    for spec in specs:
        assert re.search(r"\b(CPU|GPU) preset\b", spec.description), spec.config.method_name
