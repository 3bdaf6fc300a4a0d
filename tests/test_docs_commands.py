"""Every command the README and docs/ show parses: each ``ns-train`` / ``ns-render`` / ``ns-viewer`` /
``relevance-*`` / ``python -m`` / ``python benchmarks/...`` line of their ``bash`` blocks goes through the
parser the real command uses (tyro, nerfstudio's flag conventions), and every ``--pipeline.*`` /
``--optimizers.*`` flag named in the prose is one of ``relevance-nerf2nerf``'s or ``relevance-splatfacto``'s.
Only parsing is checked: nothing runs, so placeholders such as ``<timestamp>`` are fine."""

from __future__ import annotations

import copy
import importlib
import re
import shlex
from pathlib import Path

import pytest
import tyro
from benchmark_scripts import load
from nerfstudio.plugins.types import MethodSpecification

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

CLI_TYPES = {
    "relevance-edit": ("relevance_nerf2nerf.cli.edit", "EditCommand"),
    "relevance-demo": ("relevance_nerf2nerf.cli.demo", "DemoCommand"),
    "relevance-scene": ("relevance_nerf2nerf.cli.scene", "SceneCommand"),
    "relevance-eval": ("relevance_nerf2nerf.cli.eval", "Command"),
    "relevance-preview": ("relevance_nerf2nerf.preview", "PreviewSettings"),
    "ns-render": ("nerfstudio.scripts.render", "Commands"),
    "ns-viewer": ("nerfstudio.scripts.viewer.run_viewer", "RunViewer"),
    "python -m relevance_nerf2nerf.toy_editor.train": ("relevance_nerf2nerf.toy_editor.train", "TrainConfig"),
}
"""Command -> (module, tyro target) of the commands whose lines are parsed."""


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a markdown text's ``bash`` blocks, as argument lists (continuations joined,
    comments and ``&&`` chains split off, environment assignments dropped).

    Args:
        text (str): markdown.
    """
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                tokens = shlex.split(part, comments=True)
                while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
                    tokens = tokens[1:]
                if tokens:
                    commands.append(tokens)
    return commands


def _methods() -> dict[str, MethodSpecification]:
    specs = {}
    for path in (ROOT / "method_configs").glob("[!_]*.py"):
        module = importlib.import_module(f"method_configs.{path.stem}")
        found = [v for v in vars(module).values() if isinstance(v, MethodSpecification)]
        specs |= {spec.config.method_name: spec for spec in found}
    return specs


def _parse(command: list[str]) -> None:
    if command[0] == "ns-train":
        methods = _methods()
        if command[1] not in methods:  # nerfstudio's own methods (nerfacto, splatfacto, ...)
            from nerfstudio.configs.method_configs import method_configs

            config = method_configs[command[1]]
        else:
            config = methods[command[1]].config
        tyro.cli(type(config), default=copy.deepcopy(config), args=command[2:],
                 config=(tyro.conf.FlagConversionOff,))  # fmt: skip
        return
    if command[0] == "python" and command[1].startswith("benchmarks/"):
        module = load(Path(command[1]).stem)
        tyro.cli(getattr(module, "Args", None) or module.Options, args=command[2:])
        return
    name = " ".join(command[:3]) if command[0] == "python" else command[0]
    module, attribute = CLI_TYPES[name]
    target = getattr(importlib.import_module(module), attribute)
    tyro.cli(target, args=command[3:] if command[0] == "python" else command[1:])


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for document in DOCUMENTS:
        for command in shell_commands(document.read_text()):
            if "..." in command or "<repository>" in command:
                continue  # an elided example, not a command line
            known = command[0] in ("ns-train", *CLI_TYPES) or command[:1] == ["python"] and (
                command[1].startswith("benchmarks/") or " ".join(command[:3]) in CLI_TYPES
            )
            if known:
                found.append((document.name, command))
    return found


@pytest.mark.parametrize("document,command", _documented_commands(), ids=lambda v: " ".join(v)[:60]
                         if isinstance(v, list) else v)  # fmt: skip
def test_documented_command_parses(document, command):
    try:
        _parse(command)
    except SystemExit as err:
        pytest.fail(f"{document}: `{shlex.join(command)}` is rejected by its parser (exit {err.code})")


def _expand_braces(flag: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", flag)
    if not match:
        return [flag]
    options = [flag.replace(match.group(0), option, 1) for option in match.group(1).split(",")]
    return [expanded for option in options for expanded in _expand_braces(option)]


def test_pipeline_and_optimizer_flags_in_the_prose_exist():
    known = set()
    for name in ("relevance-nerf2nerf", "relevance-splatfacto"):
        config = _methods()[name].config
        parser = tyro.extras.get_parser(type(config), default=config, config=(tyro.conf.FlagConversionOff,))
        known |= {option for action in parser._actions for option in action.option_strings}
    unknown = []
    for document in DOCUMENTS:
        for flag in re.findall(r"--(?:pipeline|optimizers)\.[\w.{},-]*[\w}]", document.read_text()):
            unknown += [f"{document.name}: {f}" for f in _expand_braces(flag) if f not in known]
    assert not unknown, "flags no scene-editing method has:\n" + "\n".join(unknown)


def test_command_extraction_joins_continuations_and_splits_chains():
    text = "```bash\nA=1 ns-train x --a 1 \\\n    --b 2   # comment\nmake setup && make demo\n```\n"
    expected = [["ns-train", "x", "--a", "1", "--b", "2"], ["make", "setup"], ["make", "demo"]]
    assert shell_commands(text) == expected
    assert _expand_braces("--o.{a,b}.c") == ["--o.a.c", "--o.b.c"]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens.

    Args:
        heading (str): the heading's text, without the leading ``#``.
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_documents_resolve():
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            if not file.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                anchors = {heading_anchor(h) for h in re.findall(r"^#+ (.*)$", file.read_text(), flags=re.M)}
                if anchor not in anchors:
                    broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_heading_anchor_follows_github():
    assert heading_anchor("The demo (`relevance-demo`, `make demo`)") == "the-demo-relevance-demo-make-demo"
    assert heading_anchor("Crop-to-relevance, batched updates, memory options") == (
        "crop-to-relevance-batched-updates-memory-options"
    )
