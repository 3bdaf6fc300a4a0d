"""Watch Your Steps: relevance-guided image and scene editing by text instruction.

The diffusion core (``relevance_nerf2nerf.diffusion``) edits single images and never imports nerfstudio;
the nerfstudio layer (``relevance_nerf2nerf.nerf``) builds the scene-editing method on top of it.

Public API (imported lazily, so ``import relevance_nerf2nerf`` stays cheap)::

    from relevance_nerf2nerf import load_editor
    editor = load_editor("timbrooks/instruct-pix2pix", device="cuda", precision="fp16")
    relevance = editor.relevance(image, "make him old")           # RelevanceResult, maps in [0, 1]
    result = editor.edit(image, "make him old", mask_threshold=0.5)  # EditResult: image, relevance, mask
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError, RelevanceError

if TYPE_CHECKING:
    from relevance_nerf2nerf.diffusion import EditResult, RelevanceEditor, RelevanceResult, load_editor

_LAZY = {"load_editor", "RelevanceEditor", "RelevanceResult", "EditResult"}

__all__ = [
    "RelevanceError",
    "InvalidInputError",
    "ModelNotFoundError",
    "load_editor",
    "RelevanceEditor",
    "RelevanceResult",
    "EditResult",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from relevance_nerf2nerf import diffusion

        return getattr(diffusion, name)
    raise AttributeError(f"module 'relevance_nerf2nerf' has no attribute {name!r}")
