"""Support for tests and benchmarks that train several runs in one Python process (not a user API)."""

from __future__ import annotations

from pathlib import Path

from nerfstudio.engine.trainer import TrainerConfig


def release_event_writers() -> None:
    """Close and forget nerfstudio's event writers (``nerfstudio.utils.writer.EVENT_WRITERS``).

    Every ``Trainer.setup`` appends its writers to that module-level list and nothing removes them, so in a
    process that trains several runs (benchmarks, tests, ``benchmarks/real_scene_table1.py``) each later run
    also logs into every earlier run's tensorboard folder, and fails once such a folder has been moved or
    deleted. Call it after each training started from Python.
    """
    from nerfstudio.utils import writer

    for event_writer in writer.EVENT_WRITERS:
        summary_writer = getattr(event_writer, "tb_writer", None)
        if summary_writer is not None:
            summary_writer.close()
    writer.EVENT_WRITERS.clear()


def in_process_config(
    base: TrainerConfig, data: Path, output: Path, experiment: str, timestamp: str, iterations: int
) -> TrainerConfig:
    """A copy of ``base`` for a short run started from Python (tests, benchmarks): tensorboard instead of the
    viewer, a fixed run folder ``output/experiment/<method>/timestamp``, ``iterations`` steps, no evaluation.

    Args:
        base (TrainerConfig): a method's config, e.g. ``nerfacto_tiny.config`` (deep-copied, not changed).
        data (Path): the dataset folder.
        output (Path): ``--output-dir``.
        experiment (str): ``--experiment-name``.
        timestamp (str): ``--timestamp``, the run folder's name.
        iterations (int): ``--max-num-iterations``.
    """
    import copy

    config = copy.deepcopy(base)
    config.vis = "tensorboard"
    config.output_dir = output
    config.experiment_name = experiment
    config.timestamp = timestamp
    config.max_num_iterations = iterations
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.pipeline.datamanager.data = data
    return config


def exact_capture(config: TrainerConfig) -> TrainerConfig:
    """``config`` with ``relevance-demo``'s ``EXACT_CAPTURE_ARGS`` applied as ns-train parses them: no pose
    refinement and no per-view appearance embedding, for generated scenes (exact poses, constant lighting).

    Args:
        config (TrainerConfig): a nerfacto run's config (not changed).
    """
    import tyro

    from relevance_nerf2nerf.cli.demo import EXACT_CAPTURE_ARGS

    flags = (tyro.conf.FlagConversionOff,)  # booleans take a value, as in ns-train
    return tyro.cli(type(config), args=list(EXACT_CAPTURE_ARGS), default=config, config=flags)
