"""The toy instruction editor: a small InstructPix2Pix trained on synthetic recolouring edits.

``train.py`` is the training script (``python -m relevance_nerf2nerf.toy_editor.train``), ``data.py``
makes the (image, instruction, edited image) triplets and ``evaluate.py`` measures edits on held-out
scenes. The trained weights live in ``relevance_nerf2nerf.assets.TOY_EDITOR_DIR`` and load with
``diffusion.editor.load_editor`` like any InstructPix2Pix directory.
"""
