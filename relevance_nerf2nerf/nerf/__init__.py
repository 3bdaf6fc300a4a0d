"""The nerfstudio layer: the ``relevance-nerf2nerf`` scene-editing method (paper sections 4.3-4.4).

- ``field``: the relevance head r(x) on nerfacto's detached geometry feature, rendered with detached weights;
- ``model``: ``RelevanceNerfactoModel`` (nerfacto + ``relevance`` output and masked relevance loss);
- ``datamanager``: ``RelevanceDataManager`` (editable training images and per-view relevance maps);
- ``pipeline``: ``RelevanceNerf2NerfPipeline`` (the relevance-guided dataset update schedule);
- ``checkpoints``: base-checkpoint loading, weights-only loading on torch >= 2.6, edited-dataset export;
- ``trainer``: ``RelevanceTrainerConfig`` (nerfstudio's Trainer with atomic checkpoint saves).

Method specifications live in ``method_configs/relevance_nerf2nerf.py``. Nothing here imports diffusers
at import time; the editor is loaded on the first dataset update.
"""
