"""The public API is documented in one style: every public function, class and method of the package has a
docstring, and every one that takes parameters names each of them in a Google-style ``Args:`` block,
``name (type[, default X]): meaning``.

Public: module-level functions and classes and the methods of public classes whose names do not start with an
underscore, in modules whose path has no underscore-prefixed part (``_testing.py`` is test support). Methods
that override a base class's method (nerfstudio's ``get_outputs``, ``setup_train``, ...) are documented where
the base defines them and are left out.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("relevance_nerf2nerf", "method_configs")

ENTRY = re.compile(r"^(\*{0,2}\w+) \((?:[^()]|\([^()]*\))+\): \S")
"""One ``Args:`` entry: the parameter's name, its type (and default) in parentheses, a colon, the meaning."""


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if any(part.startswith("_") and part != "__init__" for part in parts):
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, ast.parse(path.read_text())


def _overrides(module: str, class_name: str, method: str) -> bool:
    cls = getattr(importlib.import_module(module), class_name)
    return any(method in vars(base) for base in cls.__mro__[1:])


def _public_definitions() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]]:
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for module, tree in _modules():
        for node in tree.body:
            if node.name.startswith("_") if isinstance(node, (*functions, ast.ClassDef)) else True:
                continue
            yield f"{module}.{node.name}", node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, functions)
                        and not item.name.startswith("_")
                        and not _overrides(module, node.name, item.name)
                    ):
                        yield f"{module}.{node.name}.{item.name}", item


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return [name for name in names if name not in ("self", "cls")]


def args_entries(docstring: str) -> dict[str, str] | None:
    """The entries of a docstring's ``Args:`` block by parameter name (None: no block).

    Args:
        docstring (str): a cleaned docstring (``ast.get_docstring``).
    """
    lines = docstring.splitlines()
    if "Args:" not in (line.strip() for line in lines):
        return None
    start = [line.strip() for line in lines].index("Args:") + 1
    entries: dict[str, str] = {}
    indent = None
    for line in lines[start:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:
            break
        if depth == indent:
            entries[line.strip().split(" ")[0].rstrip(":")] = line.strip()
    return entries


def test_every_public_definition_has_a_docstring():
    missing = [name for name, node in _public_definitions() if ast.get_docstring(node) is None]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def test_every_parameter_is_named_in_one_args_style():
    problems = []
    for name, node in _public_definitions():
        docstring = ast.get_docstring(node)
        if isinstance(node, ast.ClassDef) or docstring is None or not _parameters(node):
            continue
        entries = args_entries(docstring)
        if entries is None:
            problems.append(f"{name}: no Args: block")
            continue
        undocumented = [p for p in _parameters(node) if p not in entries and p.lstrip("*") not in entries]
        if undocumented:
            problems.append(f"{name}: parameters not in Args: {undocumented}")
        problems += [f"{name}: not 'name (type): meaning': {e[:60]}" for e in entries.values()
                     if not ENTRY.match(e)]  # fmt: skip
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


CONFIG_SUFFIXES = ("Config", "Command", "Settings", "Args", "Options")
"""Dataclasses whose names end so hold settings a user sets (tyro shows each field's docstring as help)."""


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "dataclass")
        or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass")
        for d in node.decorator_list
    )


def test_every_settings_field_has_a_docstring():
    """Fields a base dataclass declares (nerfstudio's ``datamanager``, ``model``) are documented there."""
    missing = []
    for module, tree in _modules():
        for node in tree.body:
            settings = isinstance(node, ast.ClassDef) and node.name.endswith(CONFIG_SUFFIXES)
            if not (settings and _is_dataclass(node)):
                continue
            cls = getattr(importlib.import_module(module), node.name)
            inherited = {f for base in cls.__mro__[1:] for f in getattr(base, "__dataclass_fields__", {})}
            for item, after in zip(node.body, [*node.body[1:], None], strict=True):
                documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    name = item.target.id
                    if not documented and not name.startswith("_") and name not in inherited:
                        missing.append(f"{module}.{node.name}.{name}")
    assert not missing, "settings fields without a docstring:\n" + "\n".join(missing)


def test_the_checks_catch_what_they_look_for():
    good = "Do it.\n\nArgs:\n    path (Path): the file.\n    size (int, default 3): its size,\n        in px."
    entries = {"path": "path (Path): the file.", "size": "size (int, default 3): its size,"}
    assert args_entries(good) == entries
    assert all(ENTRY.match(e) for e in args_entries(good).values())
    assert not ENTRY.match("path: the file.") and args_entries("Do a thing.") is None
    assert ENTRY.match("callback (Callable[[int], None] | None): called per step.")
