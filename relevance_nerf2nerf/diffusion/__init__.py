"""The diffusion core: relevance maps (paper eq. 2-3) and relevance-guided InstructPix2Pix editing (eq. 4-5).

Never imports nerfstudio; diffusers and transformers are imported only when a model is loaded or built.
"""

from relevance_nerf2nerf.diffusion.backend import EditorBackend, NoisePredictions
from relevance_nerf2nerf.diffusion.editor import EditResult, RelevanceEditor, RelevanceResult, load_editor

__all__ = [
    "EditorBackend",
    "NoisePredictions",
    "EditResult",
    "RelevanceEditor",
    "RelevanceResult",
    "load_editor",
]
