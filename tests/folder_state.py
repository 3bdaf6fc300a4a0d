"""What a folder holds, to assert that a command wrote, changed and deleted nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash of everything under ``root`` ('dir' for folders, 'link -> target' for
    symlinks, which are not followed)."""
    result = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            result[key] = f"link -> {path.readlink()}"
        elif path.is_dir():
            result[key] = "dir"
        else:
            result[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result
