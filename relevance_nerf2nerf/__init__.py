"""Watch Your Steps: relevance-guided image and scene editing by text instruction.

The diffusion core (``relevance_nerf2nerf.diffusion``) edits single images and never imports nerfstudio;
the nerfstudio layer (``relevance_nerf2nerf.nerf``) builds the scene-editing method on top of it.
Heavy imports happen lazily, so importing this package is cheap.
"""

from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError, RelevanceError

__all__ = ["RelevanceError", "InvalidInputError", "ModelNotFoundError"]
