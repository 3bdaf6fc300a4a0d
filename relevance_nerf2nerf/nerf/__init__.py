"""The nerfstudio layer: relevance-guided scene editing (paper sections 4.3-4.4) for two scene models.

One update loop serves both models:

- ``edit_state``: the edit state of every training view (capture, current image, relevance map, counters, the
  instruction the maps belong to), kept in the datamanager's checkpointed buffers;
- ``datamanager``: ``RelevanceDataManager`` (ray batches, nerfacto) and ``RelevanceFullImageDataManager``
  (full images, splatfacto), both built on the edit state;
- ``pipeline``: ``RelevanceNerf2NerfPipeline``, the dataset-update schedule: which views, render through the
  model, edit, write back; viewer controls;
- ``regions``: user regions (mask folders, a box in the capture's coordinates) that bound every edit mask;
- ``sequence``: the checks that let an edited scene's export serve as the next edit's capture;
- ``checkpoints``: loading a base or a resumed run, weights-only unpickling on torch >= 2.6;
- ``export``: the edited dataset (``<run>/edited_dataset``), written whole after every update;
- ``run_folder``: an edit's run folder is never overwritten, and a running edit holds it;
- ``trainer``: ``RelevanceTrainer`` (checks before ``config.yml`` is written, atomic checkpoints, resumed
  runs that finish their plan, schedules that span the run);
- ``relevance``: the output and batch names and the masked loss both models share.

Each scene model has its own module: ``nerfacto_model`` (nerfacto + a relevance head on its detached
geometry) and ``splatfacto_model`` (splatfacto + one relevance logit per Gaussian, with ``splat_rasterizer``,
a pure-torch renderer for the CPU, and ``dataparser``, which reads a capture's point cloud without open3d).
``field`` and ``model`` are the former locations of the nerfacto classes, kept for saved ``config.yml`` files.

Method specifications live in ``method_configs/``. Nothing here imports diffusers at import time; the editor
is loaded on the first dataset update.
"""
