"""Files shipped with the package: the trained toy instruction editor (diffusers IP2P format)."""

import json
from pathlib import Path

TOY_EDITOR_DIR = Path(__file__).parent / "toy-editor"

TOY_EDITOR_IQR_RATIO: float = json.loads((TOY_EDITOR_DIR / "relevance_settings.json").read_text())[
    "iqr_ratio"
]
"""Scene relevance IQR ratio for the toy editor, 3.5, stated once in the editor's own
``relevance_settings.json`` (which ``load_editor`` reads, so the scene pipeline and ``relevance-demo`` use it
through any spelling of the folder's path unless the user sets a ratio); chosen on two
validation sets of 24 held-out scenes (``held_out_samples`` seeds 2 and 3, not the reported sets 0 and 1):
of 1.5 / 2 / 2.5 / 3 / 3.5 / 4 / 5, ratio 3.5 meets the most of the localisation targets there (7 of 8: target
>= 0.85, other objects <= 0.35, background <= 0.25 in both, mask IoU >= 0.5 in one), tied with 5, which
pushes the target under 0.85 in one set; smaller ratios saturate the other objects (the repository's
``toy_editor_training/evaluation.json``: ``iqr_ratio_validation``). The real IP2P keeps the authors' 2."""
