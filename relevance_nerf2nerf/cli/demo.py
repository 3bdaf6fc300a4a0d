"""``relevance-demo`` (``make demo``): the whole method end to end on a CPU, beside Instruct-NeRF2NeRF.

1. generate a synthetic scene (``relevance_nerf2nerf.scenes``) with ground-truth object masks;
2. ``ns-train nerfacto-tiny`` on it: the unedited base scene, trained once;
3. ``ns-train relevance-nerf2nerf-tiny --pipeline.base-checkpoint <base> --pipeline.instruction ...`` with the
   bundled toy editor (``relevance_nerf2nerf/assets/toy-editor``, a small trained InstructPix2Pix), and (with
   ``--compare``, off by default) the same from the same base, seed and cameras with
   ``--pipeline.mask-threshold 0``: Instruct-NeRF2NeRF;
4. render every view of every run: GIFs and a contact sheet (input, before, IN2N after, ours after,
   relevance), and measure per method (``relevance_nerf2nerf.evaluation``, from the generator's masks) the
   PSNR outside the edited object, its colour change, the colour change of every other object and the wall
   time of every stage (printed as a table and written to ``metrics.json``).

The training stages run ``ns-train`` as subprocesses, exactly as a user would (their logs go to
``<output-dir>/logs``). With a GPU and the real InstructPix2Pix only the flags change, e.g.::

    relevance-demo --device cuda --editor-model timbrooks/instruct-pix2pix --width 512 --height 512 \\
        --base-method nerfacto --edit-method relevance-nerf2nerf \\
        --base-iterations 30000 --edit-iterations 4000

(``nerfacto`` is nerfstudio's full model; ``relevance-nerf2nerf-small`` keeps the editor in fp16.)
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.cli.common import run_command
from relevance_nerf2nerf.diffusion.images import MAX_MEGAPIXELS, check_megapixels
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO, check_iqr_ratio
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, editor_relevance_settings
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.evaluation.ground_truth import ground_truth_metrics, load_ground_truth, target_of
from relevance_nerf2nerf.evaluation.sheets import contact_sheet, heatmaps, rgb_rows, save_gif, save_video
from relevance_nerf2nerf.outputs import check_output_dir
from relevance_nerf2nerf.scenes.spec import random_scene_spec, ring_cameras

_STEP = re.compile(r"(\d+)\s+\(\s*(\d+(?:\.\d+)?)%\)")
SIDE_BY_SIDE = "input_before_after_relevance.gif"
IN2N = "Instruct-NeRF2NeRF (tau 0)"
EXACT_CAPTURE_ARGS = ("--pipeline.model.camera-optimizer.mode", "off",
                      "--pipeline.model.use-appearance-embedding", "False")  # fmt: skip
"""ns-train settings of both stages for the generated scenes (exact poses, constant lighting)."""


@dataclass
class DemoCommand:
    """Generate a scene, train nerfacto on it, edit it by instruction with relevance guidance, render."""

    instruction: str = "make the cube blue"
    """Edit instruction naming an object of the scene ("make the <shape> <colour>" for the toy editor)."""
    scene_seed: int = 0
    """Seed of the generated scene (seed 0: an orange cone, a red cube and a purple sphere)."""
    output_dir: Path = Path("demo_outputs")
    """Each run writes its scene, runs, logs, renders and metrics.json into a fresh sub-folder
    <output-dir>/<UTC date_time>; nothing already there is changed or deleted."""
    base_iterations: int = 1500
    """Iterations of the base reconstruction."""
    edit_iterations: int = 1000
    """Iterations of scene editing after the base checkpoint (one view is edited every 10)."""
    editor_model: str = str(TOY_EDITOR_DIR)
    """InstructPix2Pix weights: the bundled toy editor, a local diffusers folder or a hub id."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device of training, rendering and the editor."""
    num_views: int = 24
    """Number of views of the generated scene."""
    width: int = 64
    """Width of the generated views."""
    height: int = 64
    """Height of the generated views."""
    num_objects: int = 3
    """Number of objects in the generated scene (1-4)."""
    backend: Literal["nerfacto", "splatfacto"] = "nerfacto"
    """Scene model: nerfacto with a relevance head, or splatfacto with one relevance value per Gaussian (on
    the CPU rendered by the pure-torch rasterizer; the scene then also gets a point cloud of its surfaces)."""
    base_method: str | None = None
    """nerfstudio method of the base reconstruction (default: the backend's CPU preset, nerfacto-tiny or
    splatfacto-tiny)."""
    edit_method: str | None = None
    """Scene editing method (default: the backend's CPU preset, relevance-nerf2nerf-tiny or
    relevance-splatfacto-tiny)."""
    mask_threshold: float = DEFAULTS.mask_threshold
    """tau; 0 reproduces Instruct-NeRF2NeRF (no relevance guidance)."""
    text_guidance: float = DEFAULTS.text_guidance
    """s_T."""
    image_guidance: float = DEFAULTS.image_guidance
    """s_I."""
    relevance_iqr_ratio: float | None = None
    """IQR ratio of each view's relevance map (--pipeline.relevance-iqr-ratio of the edit stage). Default: the
    ratio the editor's folder recommends (relevance_settings.json: 3.5 for the bundled toy editor, chosen for
    it on validation scenes), else the pipeline's own 2 (SCENE_IQR_RATIO, the authors' value for the real
    InstructPix2Pix)."""
    seed: int = 0
    """Seed of the editing pipeline (view order, noise levels, diffusion noise)."""
    extra_edit_args: list[str] = field(default_factory=list)
    """Further ns-train arguments for the editing run, e.g. --extra-edit-args=--pipeline.edit-every 5."""
    compare: bool = False
    """Also run Instruct-NeRF2NeRF (the same pipeline with tau 0) from the same base run, seed and cameras,
    and show both edits side by side. Off by default: it adds a whole second edit stage (about 6 minutes on
    a two-core CPU, doubling the editing time)."""
    exact_capture: bool = True
    """The generated views have exact poses and constant lighting: train both nerfacto stages without pose
    refinement and without per-view appearance embeddings (EXACT_CAPTURE_ARGS). Renders use the average
    embedding, which fits no view and shifted colours (benchmarks/bench_base_quality.py). --no-exact-capture
    keeps the methods' own settings."""


    def __post_init__(self) -> None:
        base, edit = BACKEND_METHODS[self.backend]
        self.base_method = self.base_method or base
        self.edit_method = self.edit_method or edit


BACKEND_METHODS = {
    "nerfacto": ("nerfacto-tiny", "relevance-nerf2nerf-tiny"),
    "splatfacto": ("splatfacto-tiny", "relevance-splatfacto-tiny"),
}
"""--backend -> the CPU presets of its base and of its edit."""
EDIT_METHODS = {
    "nerfacto": ("relevance-nerf2nerf", "relevance-nerf2nerf-small", "relevance-nerf2nerf-tiny"),
    "splatfacto": ("relevance-splatfacto", "relevance-splatfacto-tiny"),
}
"""--backend -> the scene editing methods of that scene model."""


@dataclass
class Stage:
    """One stage of the demo (generate, train base, edit, render) and its wall time in seconds."""

    name: str
    seconds: float


def _ns_train() -> str:
    beside = Path(sys.executable).parent / "ns-train"
    found = str(beside) if beside.exists() else shutil.which("ns-train")
    if found is None:
        raise RelevanceError(
            "ns-train not found: install nerfstudio (make setup) or activate the environment"
        )
    return found


def run_ns_train(args: list[str], total: int, description: str, log_path: Path, progress) -> None:
    """Run ``ns-train`` with a progress bar fed from its step counter; its output goes to ``log_path``.

    Args:
        args (list[str]): the ns-train arguments after the command name.
        total (int): iterations the bar counts to.
        description (str): the bar's label.
        log_path (Path): file that receives ns-train's output.
        progress (rich.progress.Progress): the live progress display to add the bar to.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(description, total=total)
    command = [_ns_train(), *args]
    tail: list[str] = []
    with log_path.open("w") as log:
        log.write(" ".join(command) + "\n")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail = (tail + [line.strip()])[-20:]
            for match in _STEP.finditer(line):
                progress.update(task, completed=min(total, int(match.group(1)) + 1))
        code = process.wait()
    if code != 0:
        last = next((t for t in reversed(tail) if t), "")
        raise RelevanceError(f"{description} failed (exit code {code}): {last[:200]} (full log: {log_path})")
    progress.update(task, completed=total)


def _run_dir(root: Path, method: str, timestamp: str) -> Path:
    return root / "demo" / method / timestamp


def write_media(out: Path, rows: dict[str, np.ndarray], gifs: dict[str, np.ndarray]) -> dict[str, Path]:
    """One GIF per entry of ``gifs``, all ``rows`` side by side as a GIF and an MP4, and a contact sheet PNG.

    Args:
        out (Path): the run's folder.
        rows (dict[str, np.ndarray]): label -> (V, H, W, 3) uint8, in contact-sheet order (top to bottom, left
            to right in the GIF).
        gifs (dict[str, np.ndarray]): file stem -> (V, H, W, 3) uint8 frames.
    """
    from PIL import Image

    paths = {f"{name}_gif": save_gif(frames, out / f"{name}.gif") for name, frames in gifs.items()}
    side_by_side = np.concatenate(list(rows.values()), axis=2)
    paths["side_by_side_gif"] = save_gif(side_by_side, out / SIDE_BY_SIDE)
    paths["side_by_side_mp4"] = save_video(side_by_side, out / Path(SIDE_BY_SIDE).with_suffix(".mp4"))
    paths["contact_sheet"] = out / "contact_sheet.png"
    Image.fromarray(contact_sheet(rows)).save(paths["contact_sheet"])
    return paths


_SEED_LIMIT = 2**32


def validate(command: DemoCommand) -> None:
    """Check every setting before anything is written.

    Args:
        command (DemoCommand): the parsed command line.

    Raises :class:`InvalidInputError` (one line naming the flag) for the first unusable setting.
    """
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
    from relevance_nerf2nerf.diffusion.ip2p import resolve_device
    from relevance_nerf2nerf.diffusion.settings import check_editor_model

    if command.base_iterations < 1 or command.edit_iterations < 1:
        raise InvalidInputError("--base-iterations and --edit-iterations must be at least 1")
    for flag, seed in (("--scene-seed", command.scene_seed), ("--seed", command.seed)):
        if not 0 <= seed < _SEED_LIMIT:
            raise InvalidInputError(f"{flag} must be in [0, {_SEED_LIMIT - 1}], got {seed}")
    if command.num_views < 2:
        raise InvalidInputError(
            f"--num-views must be at least 2 (train and eval views), got {command.num_views}"
        )
    ring_cameras(command.num_views, command.width, command.height)  # the generator's own size checks
    check_megapixels(
        command.height, command.width, MAX_MEGAPIXELS[command.device],
        f"a --width x --height view on {command.device}", "lower --width and --height (e.g. {fit})",
    )  # fmt: skip
    validate_edit_settings(
        command.instruction,
        mask_threshold=command.mask_threshold,
        text_guidance=command.text_guidance,
        image_guidance=command.image_guidance,
    )
    if command.relevance_iqr_ratio is not None:
        check_iqr_ratio(command.relevance_iqr_ratio, "--relevance-iqr-ratio")
    spec = random_scene_spec(command.scene_seed, command.num_objects)
    target_of(command.instruction, [obj.name for obj in spec.objects])
    if command.device == "cuda":
        resolve_device("cuda")
    editor_path = Path(command.editor_model).expanduser()
    if command.editor_model == str(TOY_EDITOR_DIR) and not (editor_path / "model_index.json").is_file():
        raise RelevanceError(f"the bundled toy editor is missing from {editor_path}: reinstall the package")
    check_editor_model(command.editor_model, "--editor-model")
    if command.edit_method not in EDIT_METHODS[command.backend]:
        raise InvalidInputError(
            f"--edit-method {command.edit_method} is not a scene editing method of --backend "
            f"{command.backend}: use {', '.join(EDIT_METHODS[command.backend])}"
        )
    check_output_dir(command.output_dir, "--output-dir")
    if command.extra_edit_args:
        check_extra_edit_args(command)


DEMO_RUN_FLAGS = ("--data", "--output-dir", "--experiment-name", "--timestamp", "--load-dir",
                  "--load-checkpoint", "--method-name")  # fmt: skip
"""ns-train flags that place the demo's runs: the demo sets them, --extra-edit-args may not."""


def parse_edit_args(method: str, args: list[str]):
    """Parse an edit stage's ns-train arguments (after the method name) as ``ns-train`` would; tyro's usage
    error (a box of text on stderr) becomes one line.

    Args:
        method (str): the edit method, e.g. ``relevance-nerf2nerf-tiny``.
        args (list[str]): its arguments.

    Returns the parsed ``RelevanceTrainerConfig``.
    """
    import contextlib
    import copy
    import io
    import os

    import method_configs.relevance_nerf2nerf as nerfacto_methods
    import method_configs.relevance_splatfacto as splatfacto_methods

    name = method.replace("-", "_")
    spec = getattr(nerfacto_methods, name, None) or getattr(splatfacto_methods, name, None)
    if spec is None or not hasattr(spec, "config"):
        known = [m for methods in EDIT_METHODS.values() for m in methods]
        raise InvalidInputError(
            f"--edit-method {method} is not a scene editing method: use {', '.join(known)}"
        )
    text, columns = io.StringIO(), os.environ.get("COLUMNS")  # tyro's settings below are ns-train's
    os.environ["COLUMNS"] = "1000"  # one message per line in tyro's box
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            config_type = tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[type(spec.config)]]
            return tyro.cli(config_type, default=copy.deepcopy(spec.config), args=args)
    except SystemExit as exit_:
        if exit_.code == 0:
            raise InvalidInputError(
                f"--extra-edit-args asks for help: run ns-train {method} --help"
            ) from None
        lines = [line.strip(" │╭╮╰╯─━┃") for line in text.getvalue().splitlines()]
        content = [line for line in lines if line and set(line) - set("-─━")]
        message = content[1] if len(content) > 1 else (content[0] if content else "cannot be parsed")
        raise InvalidInputError(f"--extra-edit-args: {message} (see ns-train {method} --help)") from None
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def check_extra_edit_args(command: DemoCommand) -> None:
    """Check ``--extra-edit-args`` before the base trains: no flag the demo sets to place its runs, the whole
    edit stage's arguments parsed as ``ns-train`` parses them, then the method's set-up checks.

    Args:
        command (DemoCommand): the parsed command line.
    """
    for arg in command.extra_edit_args:
        if arg.split("=", 1)[0] in DEMO_RUN_FLAGS:
            raise InvalidInputError(
                f"--extra-edit-args may not set {arg.split('=', 1)[0]}: the demo places its runs itself "
                "(choose --output-dir of relevance-demo)"
            )
    plan = plan_run(command, command.output_dir / "<run>")
    checkpoint = plan.base_dir / "nerfstudio_models" / "step-000000000.ckpt"
    args = edit_stage_args(command, plan, checkpoint, "edit", command.mask_threshold)
    config = parse_edit_args(command.edit_method, args[1:])
    try:
        config.check_setup()
    except RelevanceError as err:
        raise InvalidInputError(f"--extra-edit-args: {err}") from err


def default_iqr_ratio(editor_model: str) -> float:
    """The scene relevance IQR ratio for an editor: the one its folder recommends
    (``relevance_settings.json``; the bundled toy editor's is ``TOY_EDITOR_IQR_RATIO``), else the scene
    pipeline's (``SCENE_IQR_RATIO``, the authors' value for IP2P). Any spelling of the folder's path gives
    the same ratio.

    Args:
        editor_model (str): hub id or folder of the editor.
    """
    return editor_relevance_settings(editor_model).get("iqr_ratio", SCENE_IQR_RATIO)


def edit_iqr_ratio(command: DemoCommand) -> float:
    """The edit stage's relevance IQR ratio: ``--relevance-iqr-ratio``, else the default for the editor.

    Args:
        command (DemoCommand): the parsed demo command.
    """
    if command.relevance_iqr_ratio is not None:
        return command.relevance_iqr_ratio
    return default_iqr_ratio(command.editor_model)


def new_run_dir(output_dir: Path) -> Path:
    """Create and return a fresh ``<output_dir>/<UTC time>`` folder (``-2``, ``-3``... if taken).

    Every run writes only there, so nothing a user (or an earlier run) put in ``output_dir`` is touched.

    Args:
        output_dir (Path): the ``--output-dir`` (created if missing).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H%M%S", time.gmtime())
    for attempt in itertools.count(1):
        candidate = output_dir / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


@dataclass
class DemoPlan:
    """Where one demo run writes and what it trains: fixed before the first stage starts."""

    out: Path
    """The run's fresh folder ``<output-dir>/<UTC time>``."""
    scene_dir: Path
    """The generated scene."""
    runs: Path
    """``--output-dir`` of every ns-train stage."""
    base_dir: Path
    """The base run's folder."""
    common: list[str]
    """ns-train arguments of every stage (data, output folder, experiment, device...)."""
    edits: dict[str, tuple[str, float]]
    """Method label -> (run timestamp, tau); Instruct-NeRF2NeRF is the same pipeline with tau 0."""
    ours: str
    """Label of the relevance-guided method."""
    iqr_ratio: float
    """The edit stage's relevance IQR ratio."""


def plan_run(command: DemoCommand, out: Path) -> DemoPlan:
    """The run's folders, stages and ns-train arguments common to every stage.

    Args:
        command (DemoCommand): the parsed command line.
        out (Path): the run's fresh folder.
    """
    runs, scene_dir = out / "runs", out / "scene"
    exact = command.exact_capture and command.backend == "nerfacto"  # splatfacto has neither of these
    common = ["--data", str(scene_dir), "--output-dir", str(runs), "--experiment-name", "demo",
              "--vis", "tensorboard", "--machine.device-type", command.device,
              *(EXACT_CAPTURE_ARGS if exact else [])]  # fmt: skip
    ours = f"ours (tau {command.mask_threshold:g})"
    edits = {ours: ("edit", command.mask_threshold)}
    if command.compare:
        edits[IN2N] = ("edit-in2n", 0.0)
    base_dir = _run_dir(runs, command.base_method, "base")
    return DemoPlan(out, scene_dir, runs, base_dir, common, edits, ours, edit_iqr_ratio(command))


def edit_stage_args(
    command: DemoCommand, plan: DemoPlan, checkpoint: Path, timestamp: str, tau: float
) -> list[str]:
    """The ns-train arguments of one edit stage (``--extra-edit-args`` last).

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        checkpoint (Path): the base checkpoint the edit starts from.
        timestamp (str): the edit run's ``--timestamp``.
        tau (float): its mask threshold.
    """
    return [
        command.edit_method, *plan.common, "--timestamp", timestamp,
        "--max-num-iterations", str(command.edit_iterations),
        "--pipeline.base-checkpoint", str(checkpoint), "--pipeline.instruction", command.instruction,
        "--pipeline.editor-model", command.editor_model, "--pipeline.editor-device", command.device,
        "--pipeline.mask-threshold", str(tau), "--pipeline.relevance-iqr-ratio", str(plan.iqr_ratio),
        "--pipeline.text-guidance", str(command.text_guidance),
        "--pipeline.image-guidance", str(command.image_guidance),
        "--pipeline.seed", str(command.seed), *command.extra_edit_args,
    ]  # fmt: skip


def generate_demo_scene(command: DemoCommand, plan: DemoPlan, stages: list[Stage]):
    """Write the generated scene; returns it (``SceneInfo``).

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        stages (list[Stage]): the wall-time record, appended to.
    """
    from relevance_nerf2nerf.scenes import generate_scene

    start = time.perf_counter()
    scene = generate_scene(
        plan.scene_dir, seed=command.scene_seed, num_views=command.num_views, width=command.width,
        height=command.height, num_objects=command.num_objects,
    )  # fmt: skip
    if command.backend == "splatfacto":  # splatfacto starts from a point cloud, as from ns-process-data's
        from relevance_nerf2nerf.scenes.points import add_point_cloud

        add_point_cloud(plan.scene_dir, seed=command.scene_seed)
    stages.append(Stage("generate scene", time.perf_counter() - start))
    return scene


def train_stages(command: DemoCommand, plan: DemoPlan, progress, stages: list[Stage]) -> None:
    """``ns-train`` the base, then every edit from the same base checkpoint, seed and cameras.

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        progress (rich.progress.Progress): where the stages' bars go.
        stages (list[Stage]): the wall-time record, appended to.
    """
    start = time.perf_counter()
    base_args = [command.base_method, *plan.common, "--timestamp", "base",
                 "--max-num-iterations", str(command.base_iterations)]  # fmt: skip
    base_log = plan.out / "logs" / "base.log"
    run_ns_train(base_args, command.base_iterations, f"ns-train {command.base_method}", base_log, progress)
    stages.append(Stage(f"train base ({command.base_method})", time.perf_counter() - start))
    checkpoint = sorted((plan.base_dir / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    for method, (timestamp, tau) in plan.edits.items():
        start = time.perf_counter()
        log = plan.out / "logs" / f"{timestamp.replace('-', '_')}.log"
        label = f"ns-train {'IN2N' if method == IN2N else command.edit_method}"
        edit_args = edit_stage_args(command, plan, checkpoint, timestamp, tau)
        run_ns_train(edit_args, command.edit_iterations, label, log, progress)
        stage = "edit, Instruct-NeRF2NeRF (tau 0)" if method == IN2N else f"edit ({command.edit_method})"
        stages.append(Stage(stage, time.perf_counter() - start))


def render_and_measure(command: DemoCommand, plan: DemoPlan, target: tuple, progress) -> tuple:
    """Render every view of the base and of every edit; the ground-truth metrics of every edit.

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        target (tuple[str, str | None]): the instruction's object and colour.
        progress (rich.progress.Progress): where the bar goes.

    Returns (before renders, ground truth, method -> after renders, method -> metrics).
    """
    from relevance_nerf2nerf.evaluation.render import load_pipeline, render_dataset

    task = progress.add_task("render + measure", total=1 + len(plan.edits))
    before = render_dataset(load_pipeline(plan.base_dir / "config.yml"))
    progress.advance(task)
    truth = load_ground_truth(plan.scene_dir, before.names)
    after, results = {}, {}
    for method, (timestamp, tau) in plan.edits.items():
        run_dir = _run_dir(plan.runs, command.edit_method, timestamp)
        after[method] = render_dataset(load_pipeline(run_dir / "config.yml"))
        results[method] = ground_truth_metrics(
            after[method].rgb, before.rgb, truth, *target, after[method].relevance, tau
        )
        progress.advance(task)
    return before, truth, after, results


def demo_media(command: DemoCommand, plan: DemoPlan, truth, before, after: dict) -> dict[str, Path]:
    """The contact sheet and the GIFs / video of input, before, after (IN2N, ours) and relevance.

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        truth (GroundTruth): the scene's ground truth (its renders are the input row).
        before (Renders): the base's renders.
        after (dict): method -> the edit's renders.
    """
    ours = plan.ours
    assert truth.images is not None
    rows = {"input": truth.images, "before": before.rgb}
    if command.compare:
        rows["after, IN2N (tau 0)"] = after[IN2N].rgb
    rows[f"after, {ours}"] = after[ours].rgb
    rows = rgb_rows(rows)
    relevance = after[ours].relevance
    rows["relevance (ours)"] = heatmaps(relevance) if relevance is not None else np.zeros_like(rows["before"])
    gifs = {"before": rows["before"], "after": rows[f"after, {ours}"], "relevance": rows["relevance (ours)"]}
    if command.compare:
        gifs["after_in2n"] = rows["after, IN2N (tau 0)"]
    return write_media(plan.out, rows, gifs)


def demo_record(
    command: DemoCommand, plan: DemoPlan, scene, results: dict, stages: list[Stage], media: dict
) -> dict:
    """The run's ``metrics.json`` record: scene, metrics per method, wall times, settings, outputs.

    Args:
        command (DemoCommand): the parsed command line.
        plan (DemoPlan): the run's plan.
        scene (SceneInfo): the generated scene.
        results (dict): method -> ground-truth metrics.
        stages (list[Stage]): the wall-time record.
        media (dict): name -> path of the written media.
    """
    outputs = {
        **media, "run_dir": plan.out, "base_run": plan.base_dir,
        **{f"edit_run {m}": _run_dir(plan.runs, command.edit_method, t) for m, (t, _) in plan.edits.items()},
    }  # fmt: skip
    return {
        "instruction": command.instruction,
        "scene": {
            "seed": command.scene_seed,
            "objects": _contents(scene),
            "views": command.num_views,
            "size": [command.width, command.height],
        },  # fmt: skip
        "metrics": results[plan.ours],
        "methods": results,
        "wall_time_s": {s.name: round(s.seconds, 1) for s in stages},
        "total_wall_time_s": round(sum(s.seconds for s in stages), 1),
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
            "relevance_iqr_ratio": plan.iqr_ratio,
        },
        "outputs": {k: str(v) for k, v in outputs.items()},
    }


def _contents(scene) -> str:
    return ", ".join(f"{o.colour} {o.shape}" for o in scene.spec.objects)


def run(command: DemoCommand) -> dict:
    """Run every stage; returns the metrics (also written to ``<output-dir>/<run>/metrics.json``).

    Args:
        command (DemoCommand): the parsed command line; it is validated before anything is written.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    validate(command)
    console = Console()
    plan = plan_run(command, new_run_dir(command.output_dir))
    console.print(f"writing this run to {plan.out}")
    stages: list[Stage] = []
    scene = generate_demo_scene(command, plan, stages)
    target = target_of(command.instruction, scene.object_names)
    console.print(f"scene: {_contents(scene)} -> [bold]{command.instruction}[/bold]")
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        train_stages(command, plan, progress, stages)
        start = time.perf_counter()
        before, truth, after, results = render_and_measure(command, plan, target, progress)
    media = demo_media(command, plan, truth, before, after)
    stages.append(Stage("render + measure", time.perf_counter() - start))
    record = demo_record(command, plan, scene, results, stages, media)
    (plan.out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    metrics = results[plan.ours]
    console.print(results_table(command.instruction, results, stages, metrics["base_psnr_vs_ground_truth"]))
    console.print(f"contact sheet: {media['contact_sheet']}  metrics: {plan.out / 'metrics.json'}")
    return record


def results_table(instruction: str, results: dict[str, dict], stages: list[Stage], base_psnr: float):
    """The demo's table: one column per method, one row per measure, every non-target object included.

    Args:
        instruction (str): the edit's instruction.
        results (dict[str, dict]): method -> its measured figures.
        stages (list[Stage]): the stages run, with their wall times.
        base_psnr (float): PSNR (dB) of the base against ground truth.
    """
    from rich.table import Table

    table = Table(title=f"relevance-demo: {instruction!r}")
    table.add_column("measure")
    for method in results:
        table.add_column(method, justify="right")
    first = next(iter(results.values()))
    target, colour = first["object"], first["target_colour"]
    blank = [""] * (len(results) - 1)

    def row(label: str, key: str, fmt: str = "{:.3f}") -> None:
        table.add_row(label, *(fmt.format(m[key]) for m in results.values()))

    row("PSNR outside the target, after vs before", "psnr_outside_object_after_vs_before", "{:.2f} dB")
    row(f"{target}: colour change |mean RGB after - before|", "object_colour_change")
    if colour is not None:
        row(f"{target}: colour error to {colour} before", "object_colour_error_before")
        row(f"{target}: colour error to {colour} after", "object_colour_error_after")
    row(f"{target}: nearest named colour after", "object_nearest_colour_after", "{}")
    for other in first["non_target_colour_change"]:
        changes = [f"{m['non_target_colour_change'][other]:.3f}" for m in results.values()]
        table.add_row(f"{other} (not named): colour change after vs before", *changes)
    if "relevance_iou_with_object" in first:
        row("relevance mask IoU with the target", "relevance_iou_with_object")
    table.add_row("base PSNR vs ground truth", f"{base_psnr:.2f} dB", *blank)
    for stage in stages:
        table.add_row(f"wall time: {stage.name}", f"{stage.seconds:.0f} s", *blank)
    table.add_row("wall time: total", f"{sum(s.seconds for s in stages):.0f} s", *blank)
    return table


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; errors: one line, exit code 2.

    Args:
        argv (list[str] | None, default None): the arguments (None: ``sys.argv[1:]``).
    """
    return run_command("relevance-demo", lambda: tyro.cli(DemoCommand, args=argv), run)


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
