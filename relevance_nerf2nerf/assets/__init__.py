"""Files shipped with the package: the trained toy instruction editor (diffusers IP2P format)."""

from pathlib import Path

TOY_EDITOR_DIR = Path(__file__).parent / "toy-editor"
