"""Resuming and starting edits, in-process with the trainer ``ns-train`` builds (``config.setup()``):

- ``--load-dir <nerfacto run>/nerfstudio_models`` (the Instruct-NeRF2NeRF habit) starts a fresh edit from the
  base's weights, exactly like ``--pipeline.base-checkpoint``: step 0, fresh optimizers and schedulers;
- an edit killed and resumed (any number of times, with any ``--max-num-iterations``) ends at its planned
  step and update count, and the progress display counts towards that total;
- training views too large for the editor's device are refused at set-up, in one line naming the flags.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.utils import writer

from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file, resolve_checkpoint
from relevance_nerf2nerf.nerf.trainer import PLAN_KEY, RelevanceTrainer
from relevance_nerf2nerf.scenes import generate_scene

PLAN, EDIT_EVERY = 14, 2  # steps 0..13, updates at the even steps: 7


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), seed=0, num_views=10, width=16, height=16
    ).output_dir


def _config(base, scene: Path, output: Path, name: str, iterations: int):
    config = copy.deepcopy(base)
    config.vis, config.output_dir, config.experiment_name, config.timestamp = "tensorboard", output, "t", name
    config.max_num_iterations = iterations
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.train_num_rays_per_batch = 128
    return config


def _editing(scene: Path, output: Path, name: str, iterations: int, editor: Path, **trainer):
    config = _config(relevance_nerf2nerf_tiny.config, scene, output, name, iterations)
    pipeline = config.pipeline
    pipeline.instruction, pipeline.editor_model, pipeline.edit_steps = "make the cube blue", str(editor), 1
    pipeline.edit_every, pipeline.export_dataset = EDIT_EVERY, False
    config.steps_per_save = 4
    for key, value in trainer.items():
        setattr(config, key, value)
    return config


def _setup(config) -> RelevanceTrainer:
    trainer = config.setup(local_rank=0, world_size=1)
    assert isinstance(trainer, RelevanceTrainer)
    trainer.setup()
    return trainer


@pytest.fixture(scope="module")
def base_run(scene, tmp_path_factory) -> Path:
    """A short nerfacto-tiny run: its checkpoint is at step 9 with decayed learning rates."""
    trainer = _setup(_config(nerfacto_tiny.config, scene, tmp_path_factory.mktemp("base"), "base", 10))
    trainer.train()
    return Path(trainer.base_dir)


def _learning_rates(trainer) -> dict[str, float]:
    return {name: opt.param_groups[0]["lr"] for name, opt in trainer.optimizers.optimizers.items()}


# --- --load-dir of a base run ----------------------------------------------------------------------------
def test_load_dir_of_a_base_run_starts_a_fresh_edit_like_base_checkpoint(
    scene, base_run, tmp_path, tiny_ip2p_dir, capsys
):
    base_state = load_checkpoint_file(resolve_checkpoint(base_run))
    assert base_state["step"] == 9
    load_dir = _editing(
        scene, tmp_path, "load-dir", PLAN, tiny_ip2p_dir, load_dir=base_run / "nerfstudio_models"
    )
    via_load_dir = _setup(load_dir)
    assert "holds no edit state" in " ".join(capsys.readouterr().out.split())  # rich wraps long paths
    via_base = _setup(_editing(scene, tmp_path, "base", PLAN, tiny_ip2p_dir))
    via_base.pipeline.config.base_checkpoint = base_run
    via_base.pipeline.load_base_checkpoint()

    assert via_load_dir._start_step == 0 and via_load_dir.total_iterations == PLAN
    rates = _learning_rates(via_load_dir)
    assert rates == _learning_rates(via_base)
    assert rates["fields"] == rates["proposal_networks"] == pytest.approx(1e-2)  # not the base's decayed ones
    for name, scheduler in via_load_dir.optimizers.schedulers.items():
        assert scheduler.last_epoch == 0, name
    assert all(not opt.state for opt in via_load_dir.optimizers.optimizers.values())  # no Adam moments
    loaded, reference = via_load_dir.pipeline.model.state_dict(), via_base.pipeline.model.state_dict()
    weights = [k for k in loaded if not k.startswith(("field.relevance_head.", "lpips."))]
    assert all(torch.equal(loaded[k], reference[k]) for k in weights)
    hash_table = "field.mlp_base.model.0.hash_table"
    assert torch.equal(loaded[hash_table], base_state["pipeline"][f"_model.{hash_table}"])
    assert int(via_load_dir.pipeline.datamanager.edits_done) == 0


def test_instruct_nerf2nerf_flag_names_map_onto_ours():
    """An Instruct-NeRF2NeRF command line parses as it does for ``ns-train`` and sets our settings."""
    import dataclasses

    import tyro

    default = relevance_nerf2nerf_tiny.config
    in2n = {"--pipeline.prompt": "make it blue", "--pipeline.guidance-scale": "6.5",
            "--pipeline.image-guidance-scale": "1.2", "--pipeline.diffusion-steps": "9",
            "--pipeline.edit-rate": "5", "--pipeline.edit-count": "2", "--pipeline.lower-bound": "0.1",
            "--pipeline.upper-bound": "0.7", "--pipeline.ip2p-device": "cpu",
            "--pipeline.ip2p-use-full-precision": "False"}  # fmt: skip
    parsed = tyro.cli(type(default), default=default, args=[x for pair in in2n.items() for x in pair])
    pipeline = parsed.pipeline
    ours = {"instruction": "make it blue", "text_guidance": 6.5, "image_guidance": 1.2, "edit_steps": 9,
            "edit_every": 5, "views_per_update": 2, "edit_noise_range": (0.1, 0.7), "editor_device": "cpu",
            "editor_precision": "fp16"}  # fmt: skip
    assert {k: getattr(pipeline, k) for k in ours} == ours
    aliases = {flag.removeprefix("--pipeline.").replace("-", "_") for flag in in2n}
    assert all(getattr(pipeline, name) is None for name in aliases)  # config.yml keeps only our names
    assert aliases <= {f.name for f in dataclasses.fields(pipeline)}
    unchanged = tyro.cli(type(default), default=default, args=["--pipeline.instruction", "x"]).pipeline
    assert unchanged.edit_noise_range == default.pipeline.edit_noise_range and unchanged.instruction == "x"


# --- killed and resumed edits ----------------------------------------------------------------------------
class _Killed(BaseException):
    """Stands in for SIGKILL at the end of a training step."""


def _kill_at(trainer: RelevanceTrainer, at: int) -> None:
    def kill(step: int) -> None:
        if step == at:
            raise _Killed

    trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], kill))


def test_a_killed_edit_resumed_ends_at_its_planned_step_and_update_count(
    scene, base_run, tmp_path, tiny_ip2p_dir
):
    first = _setup(_editing_with_base(scene, tmp_path, "first", PLAN, tiny_ip2p_dir, base_run))
    assert writer.GLOBAL_BUFFER["max_iter"] == PLAN
    _kill_at(first, 9)
    with pytest.raises(_Killed):
        first.train()
    checkpoints = Path(first.base_dir)  # the run folder works as well as its nerfstudio_models
    # resumed as nerfstudio users do, once with a different --max-num-iterations: the plan is kept
    for name, iterations, kill in (("second", 5, 13), ("third", PLAN, None)):
        config = _editing_with_base(scene, tmp_path, name, iterations, tiny_ip2p_dir, base_run)
        config.load_dir = checkpoints
        resumed = _setup(config)
        assert (
            resumed.total_iterations == PLAN and writer.GLOBAL_BUFFER["max_iter"] == PLAN
        )  # progress: of 14
        assert resumed._start_step == {"second": 9, "third": 13}[name]  # after the checkpoints at 8 and 12
        if kill is not None:
            _kill_at(resumed, kill)
            with pytest.raises(_Killed):
                resumed.train()
        else:
            resumed.train()
        checkpoints = resumed.checkpoint_dir
    final = load_checkpoint_file(resolve_checkpoint(resumed.base_dir))
    assert final["step"] == PLAN - 1 and final[PLAN_KEY] == {"total_iterations": PLAN}
    state = final["pipeline"]
    updates = len(range(0, PLAN, EDIT_EVERY))
    assert int(state["datamanager.edits_done"]) == updates == int(state["datamanager.edit_counts"].sum())

    # a finished edit resumed again trains nothing; --total-iterations extends the plan
    config = _editing_with_base(scene, tmp_path, "again", PLAN, tiny_ip2p_dir, base_run)
    config.load_dir = resumed.checkpoint_dir
    again = _setup(config)
    again.train()
    assert not again.checkpoint_dir.exists()
    config = _editing_with_base(scene, tmp_path, "longer", PLAN, tiny_ip2p_dir, base_run, total_iterations=18)
    config.load_dir = resumed.checkpoint_dir
    longer = _setup(config)
    longer.train()
    final = load_checkpoint_file(resolve_checkpoint(longer.base_dir))
    assert final["step"] == 17 and int(final["pipeline"]["datamanager.edits_done"]) == updates + 2


def _editing_with_base(scene, output, name, iterations, editor, base_run, **trainer):
    config = _editing(scene, output, name, iterations, editor, **trainer)
    config.pipeline.base_checkpoint = base_run
    return config


# --- size guard, scene editing --------------------------------------------------------------------------
def test_views_above_the_editors_size_guard_are_refused_at_setup(scene, tmp_path, tiny_ip2p_dir):
    from relevance_nerf2nerf.errors import InvalidInputError

    config = _editing(scene, tmp_path, "big", PLAN, tiny_ip2p_dir, editor_max_megapixels=0.0002)  # 200 px
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(InvalidInputError, match="16x16.*downscale-factor.*--editor-max-megapixels") as error:
        trainer.setup()  # 16x16 = 256 pixels
    assert "\n" not in str(error.value) and "14x14 fits" in str(error.value)
    assert "editor" not in trainer.pipeline.__dict__  # refused before the editor was loaded


def _planned_updates(last_step: int, views_per_update: int, num_views: int) -> int:
    """Updates after the edit events at steps 0..last_step: each event updates the views due up to
    ``views_per_update``, never past the end of a pass."""
    done = 0
    for _ in range(0, last_step + 1, EDIT_EVERY):
        done += min(views_per_update, num_views - done % num_views)
    return done


@pytest.mark.slow
@pytest.mark.parametrize(
    "pipeline_options",
    [{}, {"views_per_update": 3, "crop_to_relevance": True}],
    ids=["one-view", "batched-cropped"],
)
def test_soak_twenty_random_kills(scene, base_run, tmp_path, tiny_ip2p_dir, monkeypatch, pipeline_options):
    """20 kills at random steps, some inside a checkpoint write, each resumed from the newest checkpoint:
    no edited view or relevance map is lost, counters never go back, and the run ends at its plan (also with
    batched, cropped updates, whose views with an empty mask count as updates without an edit)."""
    import random

    plan, rng = 40, random.Random(0)
    k = pipeline_options.get("views_per_update", 1)
    run_dir, kills, torn_saves, previous = None, 0, 0, None
    real_save = torch.save
    while True:
        config = _editing_with_base(
            scene, tmp_path, f"run{kills}", plan, tiny_ip2p_dir, base_run, steps_per_save=3
        )
        for key, value in pipeline_options.items():
            setattr(config.pipeline, key, value)
        config.load_dir = run_dir
        trainer = _setup(config)
        killing = kills < 20
        if killing and rng.random() < 0.3:  # die while writing the next checkpoint

            def torn_save(state, path):
                Path(path).write_bytes(b"PK\x03\x04")
                raise _Killed

            monkeypatch.setattr(torch, "save", torn_save)
            torn_saves += 1
        elif killing:
            _kill_at(trainer, rng.randrange(trainer._start_step, plan))
        try:
            trainer.train()
            assert not killing or trainer.step == plan - 1  # a kill at the very last steps may not land
            break
        except _Killed:
            kills += 1
        finally:
            monkeypatch.setattr(torch, "save", real_save)
        if trainer.checkpoint_dir.is_dir() and list(trainer.checkpoint_dir.glob("step-*.ckpt")):
            run_dir = Path(trainer.base_dir)
        state = load_checkpoint_file(resolve_checkpoint(run_dir)) if run_dir else None
        if state is not None and previous is not None:
            new, old = state["pipeline"], previous["pipeline"]
            assert state["step"] >= previous["step"]
            assert bool((new["datamanager.edit_counts"] >= old["datamanager.edit_counts"]).all())
            assert bool(new["datamanager.relevance_valid"][old["datamanager.relevance_valid"]].all())
        if state is not None:
            counts = state["pipeline"]["datamanager.edit_counts"]
            done = int(state["pipeline"]["datamanager.edits_done"])
            assert done == _planned_updates(state["step"], k, len(counts))  # every update kept
            assert int(counts.sum()) == done or (pipeline_options and int(counts.sum()) <= done)
            previous = state
    final = load_checkpoint_file(resolve_checkpoint(trainer.base_dir))
    assert final["step"] == plan - 1
    counts = final["pipeline"]["datamanager.edit_counts"]
    assert int(final["pipeline"]["datamanager.edits_done"]) == _planned_updates(plan - 1, k, len(counts))
    print(f"soak: {kills} kills ({torn_saves} inside a checkpoint write), ended at step {final['step']}")
