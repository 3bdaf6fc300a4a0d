"""What the scene method promises, at the level where it happens: a changed instruction starts a new edit of
the capture, first updates never take masks from an untrained relevance head, batched updates visit what
one-view updates visit, learning rates end at lr_final whatever the run's length, set-up refuses bad
settings before anything is written, editor folders carry their relevance settings, relevance is finite."""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_batched import make_pipeline  # the tiny preset's pipeline on a scene, with options

from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny
from relevance_nerf2nerf._testing import in_process_config
from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.diffusion.backend import NoisePredictions
from relevance_nerf2nerf.diffusion.editor import RelevanceEditor, load_editor
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO, postprocess, relevance_from_noise
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, EditSettings, editor_relevance_settings
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_PARAM_GROUP
from relevance_nerf2nerf.scenes import generate_scene

CUBE, SPHERE = "make the cube blue", "make the sphere green"


class StubEditor:
    """Records every call. Relevance: a fixed square map; edit: inverts the masked pixels of the source."""

    def __init__(self, size: int):
        self.map = torch.zeros(1, 1, size, size)
        self.map[..., size // 4 : size // 2, size // 4 : size // 2] = 1.0
        self.relevance_calls: list[dict] = []
        self.edit_calls: list[dict] = []

    def relevance(self, image, instruction, *, generator=None, **settings):
        self.relevance_calls.append({"seed": generator.initial_seed(), "instruction": instruction})
        return SimpleNamespace(pixel=self.map.clone(), latent=self.map.clone())

    def edit(self, image, instruction, *, relevance, mask_threshold, composite_source, generator, **settings):
        self.edit_calls.append(
            {
                "relevance": relevance.clone(),
                "image": image.clone(),
                "seeds": [g.initial_seed() for g in generator],
            }
        )
        mask = relevance >= mask_threshold
        return SimpleNamespace(image=torch.where(mask, 1.0 - composite_source, composite_source))


def render_current(pipeline):
    """A render double: the view's current image and relevance 1 everywhere (fast, deterministic)."""
    datamanager = pipeline.datamanager

    def render(index: int):
        image = datamanager.current_image(index)
        return image, torch.ones(1, 1, *image.shape[-2:])

    return render


@pytest.fixture(scope="module")
def scene64(tmp_path_factory) -> Path:
    info = generate_scene(tmp_path_factory.mktemp("scene64"), seed=0, num_views=6, width=64, height=64)
    return info.output_dir


@pytest.fixture(scope="module")
def scene8(tmp_path_factory) -> Path:
    info = generate_scene(tmp_path_factory.mktemp("scene8"), seed=0, num_views=8, width=16, height=16)
    return info.output_dir


@pytest.fixture(scope="module")
def toy_editor():
    return load_editor(TOY_EDITOR_DIR)


def _mask(scene: Path, name: str, pipeline, index: int) -> torch.Tensor:
    filename = Path(pipeline.datamanager.train_dataparser_outputs.image_filenames[index]).name
    return torch.from_numpy(np.asarray(Image.open(scene / "masks" / name / filename)) > 0)


# --- a changed instruction -----------------------------------------------------------------------------
def _recording(editor):
    """Wrap the toy editor's relevance to record which image and instruction each map was computed from."""
    calls = []
    relevance = editor.relevance

    def record(image, instruction, **settings):
        calls.append((image.clone(), instruction))
        return relevance(image, instruction, **settings)

    return SimpleNamespace(relevance=record, edit=editor.edit, recommended=editor.recommended), calls


def _check_new_edit(pipeline, scene, calls, view, out):
    datamanager = pipeline.datamanager
    assert out.count("Instruction changed") == 1 and "recomputed" in out  # one log line says so
    image, instruction = calls[-1]  # a map computed for the new instruction from the original capture
    assert instruction == SPHERE and torch.equal(image, datamanager.original_image(view))
    relevance = datamanager.relevance_map(view)[0, 0]
    sphere, cube = _mask(scene, "sphere", pipeline, view), _mask(scene, "cube", pipeline, view)
    assert sphere.any() and cube.any()
    assert float(relevance[sphere].mean()) > float(relevance[cube].mean()) + 0.2
    assert datamanager.relevance_valid.tolist() == [i == view for i in range(datamanager.num_views)]
    assert datamanager.edit_counts.tolist() == [int(i == view) for i in range(datamanager.num_views)]
    for other in range(datamanager.num_views):  # every other view is its capture again
        if other != view:
            assert torch.equal(datamanager.current_image(other), datamanager.original_image(other).mul(255)
                               .round().div(255))  # fmt: skip


def test_a_changed_instruction_starts_a_new_edit_of_the_capture(scene64, toy_editor, capsys):
    """Viewer change mid-run, then a resumed run with another instruction: maps recomputed from the original
    capture for the new instruction (higher on the sphere than on the cube), the relevance field reset, the
    next update edits the capture, one log line."""
    editor, calls = _recording(toy_editor)
    pipeline = make_pipeline(scene64, editor, edit_steps=2, edit_noise_range=(0.5, 0.5))
    pipeline.render_view = render_current(pipeline)
    visited = [pipeline.edit_view() for _ in range(3)]
    checkpoint = copy.deepcopy(pipeline.state_dict())  # the edit state a checkpoint of this run holds
    assert "datamanager.instruction_key" in checkpoint
    head = pipeline.model.get_param_groups()[RELEVANCE_PARAM_GROUP]
    with torch.no_grad():
        for param in head:
            param.fill_(3.0)  # as if trained on the cube's maps
    rendered = []
    pipeline.render_view = lambda i: (rendered.append(i), render_current(pipeline)(i))[1]
    pipeline.viewer_instruction.value = SPHERE
    capsys.readouterr()
    pipeline.edit_view(visited[0])
    _check_new_edit(pipeline, scene64, calls, visited[0], capsys.readouterr().out)
    assert all(not bool((param == 3.0).all()) for param in head)  # the relevance field was reset
    assert not bool(pipeline.datamanager.from_capture[visited[0]])  # its next update renders again

    resumed = make_pipeline(scene64, editor, instruction=SPHERE, edit_steps=2, edit_noise_range=(0.5, 0.5))
    resumed.render_view = render_current(resumed)
    resumed.load_state_dict(checkpoint, strict=False)  # the datamanager's state, as --load-dir restores it
    assert bool(resumed.datamanager.relevance_valid[visited[0]])  # the cube's maps came back with it
    capsys.readouterr()
    resumed.edit_view(visited[0])
    _check_new_edit(resumed, scene64, calls, visited[0], capsys.readouterr().out)
    capsys.readouterr()
    resumed.edit_view(visited[1])
    assert "Instruction changed" not in capsys.readouterr().out  # once per change


def test_a_new_edits_first_update_edits_the_capture(scene8):
    editor = StubEditor(16)
    pipeline = make_pipeline(scene8, editor)
    rgb = torch.full((1, 3, 16, 16), 0.5)
    pipeline.render_view = lambda i: (rgb, torch.ones(1, 1, 16, 16))  # a render carrying the old edit
    view = pipeline.edit_view()
    pipeline.viewer_instruction.value = SPHERE
    pipeline.edit_view(view)
    assert torch.equal(editor.edit_calls[-1]["image"], pipeline.datamanager.original_image(view))
    pipeline.edit_view(view)  # afterwards: the render again
    assert torch.equal(editor.edit_calls[-1]["image"], rgb)


# --- first updates -------------------------------------------------------------------------------------
def test_relevance_up_front_without_warm_up_masks_first_updates_with_the_2d_maps(scene8):
    """Every view has a map before its first update, but the head has not been trained on them: its
    (sigmoid ~ 0.5) render must not become the mask."""
    editor = StubEditor(16)
    pipeline = make_pipeline(scene8, editor, relevance_up_front=True, relevance_warmup_iters=0)
    pipeline.prepare_relevance()
    assert bool(pipeline.datamanager.relevance_valid.all())
    for _ in range(3):
        index = pipeline.edit_view()
        used = editor.edit_calls[-1]["relevance"]
        assert torch.equal(used, pipeline.datamanager.relevance_map(index))


# --- batched updates -----------------------------------------------------------------------------------
def _visits(pipeline, updates: int) -> tuple[list[int], list[int]]:
    editor = pipeline.editor
    editor.edit_calls.clear()
    views = []
    while int(pipeline.datamanager.edits_done) < updates:
        views += pipeline.edit_views()
    seeds = [seed for call in editor.edit_calls for seed in call["seeds"]]
    return views, seeds


@pytest.mark.parametrize("k", [2, 3, 5])
def test_batched_updates_visit_what_one_view_updates_visit(scene8, k):
    """Three passes over 8 views: the same views in the same order with the same per-view generators, each
    view once per pass."""
    updates = 3 * 8
    one = make_pipeline(scene8, StubEditor(16))
    one.render_view = render_current(one)
    batched = make_pipeline(scene8, StubEditor(16), views_per_update=k)
    batched.render_view = render_current(batched)
    expected_views, expected_seeds = _visits(one, updates)
    views, seeds = _visits(batched, updates)
    assert views == expected_views and seeds == expected_seeds
    for p in range(3):
        assert sorted(views[8 * p : 8 * (p + 1)]) == list(range(8))
    relevance_seeds = [call["seed"] for call in batched.editor.relevance_calls]
    assert relevance_seeds == [call["seed"] for call in one.editor.relevance_calls]
    assert batched.datamanager.edit_counts.tolist() == [3] * 8


# --- learning rates ------------------------------------------------------------------------------------
def _final_learning_rates(run: Path) -> dict[str, float]:
    [checkpoint] = sorted((run / "nerfstudio_models").glob("*.ckpt"))[-1:]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return {group: s["param_groups"][0]["lr"] for group, s in state["optimizers"].items()}


@pytest.mark.slow
def test_every_schedule_ends_at_lr_final_whatever_the_runs_length(scene8, tmp_path):
    """A 12-iteration run, then resumed with --total-iterations 20: every group ends at its preset lr_final
    (read from the checkpoint's optimizer state); an explicit max-steps keeps its own length."""
    from relevance_nerf2nerf.nerf.trainer import RelevanceTrainer

    def train(config):
        trainer = RelevanceTrainer(config, local_rank=0, world_size=1)
        trainer.setup()
        trainer.pipeline.editor = StubEditor(16)
        trainer.train()
        return Path(trainer.base_dir)

    config = in_process_config(relevance_nerf2nerf_tiny.config, scene8, tmp_path, "lr", "run", 12)
    config.pipeline.instruction, config.pipeline.edit_every = CUBE, 5
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    explicit = config.optimizers["camera_opt"]["scheduler"]
    explicit.max_steps = 1000  # the user's own --optimizers.camera-opt.scheduler.max-steps
    run = train(config)
    finals = {g: s["scheduler"].lr_final for g, s in config.optimizers.items()}
    lrs = _final_learning_rates(run)
    assert set(lrs) == set(finals) and len(finals) >= 4
    for group, lr in lrs.items():
        if group == "camera_opt":
            assert lr > 2 * finals[group]  # 12 of its 1000 steps
        else:
            assert lr == pytest.approx(finals[group], rel=1e-6)
    resumed = copy.deepcopy(config)
    resumed.load_dir, resumed.total_iterations = run / "nerfstudio_models", 20
    explicit_resumed = resumed.optimizers["camera_opt"]["scheduler"]
    explicit_resumed.max_steps = None  # back to the run's length
    lrs = _final_learning_rates(train(resumed))
    assert all(lr == pytest.approx(finals[group], rel=1e-6) for group, lr in lrs.items())
    assert relevance_nerf2nerf_tiny.config.optimizers["fields"]["scheduler"].max_steps is None  # preset kept


# --- the size guard ------------------------------------------------------------------------------------
def test_size_guard_advice_is_accepted_by_ns_train(scene8):
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    from relevance_nerf2nerf.nerf.trainer import RelevanceTrainer

    views = SimpleNamespace(edited_images=torch.zeros(8, 1200, 1600, 3, dtype=torch.uint8))
    trainer = SimpleNamespace(
        pipeline=SimpleNamespace(datamanager=views, editor_device=torch.device("cpu")),
        config=SimpleNamespace(editor_max_megapixels=None),
    )
    with pytest.raises(InvalidInputError) as refused:
        RelevanceTrainer.check_view_size(trainer)  # type: ignore[arg-type]
    message = str(refused.value)
    advice = message.split("end the ns-train command with ")[1].split(" (")[0].split()
    assert advice[0] == "nerfstudio-data"
    command = ["relevance-nerf2nerf-tiny", "--data", str(scene8), *advice]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=command)  # ns-train's own parser
    factor = config.pipeline.datamanager.dataparser.downscale_factor
    assert (1200 // factor) * (1600 // factor) <= 1e6 < (1200 // (factor - 1)) * (1600 // (factor - 1))


# --- set-up validation ---------------------------------------------------------------------------------
def _setup_config(tmp_path: Path, **pipeline):
    config = in_process_config(
        relevance_nerf2nerf_tiny.config, tmp_path / "data", tmp_path / "out", "e", "t", 5
    )
    config.pipeline.instruction = CUBE
    config.pipeline.editor_model = str(TOY_EDITOR_DIR)
    for key, value in pipeline.items():
        setattr(config.pipeline, key, value)
    return config


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("t_rel", 0.0, "--pipeline.t-rel"),
        ("t_rel", 1.5, "--pipeline.t-rel"),
        ("text_guidance", float("nan"), "--pipeline.text-guidance"),
        ("image_guidance", float("inf"), "--pipeline.image-guidance"),
        ("mask_threshold", -0.1, "--pipeline.mask-threshold"),
        ("edit_noise_range", (0.9, 0.2), "--pipeline.edit-noise-range"),
        ("relevance_iqr_ratio", 0.0, "--pipeline.relevance-iqr-ratio"),
        ("edit_steps", 0, "--pipeline.edit-steps"),
        ("instruction", "\u200b \u200b", "--pipeline.instruction"),
        ("instruction", " ".join(["word"] * 80), "--pipeline.instruction"),
        ("editor_model", "./no/such/editor", "--pipeline.editor-model"),
        ("editor_model", "nobody/not-cached-ip2p", "--pipeline.editor-model"),
    ],
)
def test_ns_train_set_up_refuses_in_one_line_before_writing(
    tmp_path, capsys, monkeypatch, option, value, flag
):
    """Refused where nerfstudio saves config.yml: one line naming the flag, exit status 2, no run folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = _setup_config(tmp_path, **{option: value})
    with pytest.raises(SystemExit) as exited:
        config.save_config()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "out").exists()


def test_an_editor_folder_without_model_index_is_refused_at_set_up(tmp_path, capsys):
    (tmp_path / "not-an-editor").mkdir()
    config = _setup_config(tmp_path, editor_model=str(tmp_path / "not-an-editor"))
    with pytest.raises(SystemExit):
        config.save_config()
    assert "model_index.json" in capsys.readouterr().err
    config = _setup_config(tmp_path)  # the bundled editor passes and the config is written
    config.save_config()
    assert (config.get_base_dir() / "config.yml").is_file()


def test_in2n_bound_flags_are_named_when_inverted(capsys):
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    args = ["relevance-nerf2nerf-tiny", "--pipeline.lower-bound", "0.9", "--pipeline.upper-bound", "0.3"]
    with pytest.raises(SystemExit) as exited:
        tyro.cli(AnnotatedBaseConfigUnion, args=args)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--pipeline.lower-bound" in line and "--pipeline.upper-bound" in line
    assert "edit-noise-range" not in line


@pytest.mark.slow
def test_ns_train_with_t_rel_zero_exits_2_before_the_editor_loads(scene8, tmp_path):
    """The real command: one line, exit status 2, no run folder, nothing loaded."""
    ns_train = Path(sys.executable).with_name("ns-train")
    args = [str(ns_train), "relevance-nerf2nerf-tiny", "--data", str(scene8),
            "--output-dir", str(tmp_path / "out"), "--pipeline.instruction", CUBE,
            "--pipeline.editor-model", str(TOY_EDITOR_DIR), "--pipeline.t-rel", "0",
            "--vis", "tensorboard"]  # fmt: skip
    environment = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "--pipeline.t-rel" in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() and "Loading editor" not in done.stdout


def test_defaults_are_stated_once():
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipelineConfig

    config = RelevanceNerf2NerfPipelineConfig()
    for name in ("mask_threshold", "text_guidance", "image_guidance", "t_rel"):
        assert getattr(config, name) == getattr(DEFAULTS, name)
    for function in (RelevanceEditor.edit, RelevanceEditor.relevance, validate_edit_settings):
        for name, parameter in inspect.signature(function).parameters.items():
            if hasattr(DEFAULTS, name) and parameter.default is not inspect.Parameter.empty:
                assert parameter.default == getattr(DEFAULTS, name), (function.__name__, name)
    EditSettings(instruction=CUBE).validate()
    with pytest.raises(InvalidInputError, match=r"t_rel must be a number in \(0, 1\]"):
        EditSettings(instruction=CUBE, t_rel=0.0).validate()


# --- editor-carried relevance settings -------------------------------------------------------------------
def test_the_toy_editors_iqr_ratio_reaches_the_pipeline_through_any_path_spelling(scene8, monkeypatch):
    from relevance_nerf2nerf.cli.demo import default_iqr_ratio

    monkeypatch.chdir(TOY_EDITOR_DIR.parent.parent)
    monkeypatch.setenv("HOME", str(TOY_EDITOR_DIR.parent))
    spellings = [str(TOY_EDITOR_DIR), f"{TOY_EDITOR_DIR}/", os.path.relpath(TOY_EDITOR_DIR),
                 f"./{os.path.relpath(TOY_EDITOR_DIR)}/", "~/toy-editor", TOY_EDITOR_DIR]  # fmt: skip
    assert TOY_EDITOR_IQR_RATIO == 3.5
    for spelling in spellings:
        assert editor_relevance_settings(spelling) == {"iqr_ratio": TOY_EDITOR_IQR_RATIO}
        assert default_iqr_ratio(str(spelling)) == TOY_EDITOR_IQR_RATIO
    assert default_iqr_ratio("timbrooks/instruct-pix2pix") == SCENE_IQR_RATIO
    editor = load_editor(os.path.relpath(TOY_EDITOR_DIR) + "/")
    assert editor.recommended == {"iqr_ratio": TOY_EDITOR_IQR_RATIO}
    pipeline = make_pipeline(scene8, editor)
    assert pipeline.relevance_iqr_ratio() == TOY_EDITOR_IQR_RATIO  # used unless the user sets one
    pipeline.config.relevance_iqr_ratio = 1.7
    assert pipeline.relevance_iqr_ratio() == 1.7
    pipeline.editor = StubEditor(16)  # an editor recommending nothing: the scene default
    pipeline.config.relevance_iqr_ratio = None
    assert pipeline.relevance_iqr_ratio() == SCENE_IQR_RATIO


def test_a_bad_relevance_settings_file_is_refused(tmp_path):
    (tmp_path / "relevance_settings.json").write_text(json.dumps({"iqr_ratio": -1}))
    with pytest.raises(InvalidInputError, match="iqr_ratio"):
        editor_relevance_settings(tmp_path)
    (tmp_path / "relevance_settings.json").write_text(json.dumps({"tau": 0.3}))
    with pytest.raises(InvalidInputError, match="keys among"):
        editor_relevance_settings(tmp_path)


def test_ns_train_help_states_no_wrong_iqr_ratio_default(capsys):
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    with pytest.raises(SystemExit):
        tyro.cli(AnnotatedBaseConfigUnion, args=["relevance-nerf2nerf-tiny", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    start = help_text.index("--pipeline.relevance-iqr-ratio")
    entry = help_text[start : help_text.index("--pipeline.", start + 10)]
    assert "3.5" in entry and "relevance_settings.json" in entry and "default: 2" not in entry
    assert "default: 3" not in entry


# --- finite relevance ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", [0.0, 0.5, 1.0])
def test_relevance_of_uniform_and_black_images_is_finite(toy_editor, fill):
    image = torch.full((1, 3, 32, 32), fill)
    result = toy_editor.relevance(image, CUBE, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.pixel).all() and torch.isfinite(result.latent).all()
    assert float(result.pixel.min()) >= 0.0 and float(result.pixel.max()) <= 1.0


def test_relevance_of_an_image_the_editor_leaves_unchanged_is_finite_and_zero():
    eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = postprocess(relevance_from_noise(NoisePredictions(eps_text=eps, eps_img=eps.clone())), 2.0)
    assert torch.isfinite(maps).all() and not maps.any()
