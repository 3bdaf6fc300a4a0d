"""Upstream libraries in place of hand-written copies: the relevance colour map is nerfstudio's, PSNR is
torchmetrics', videos go through imageio's PyAV plugin; one float-to-uint8 conversion; every third-party
package the code imports is declared in pyproject.toml; the hub's download bars stay visible."""

from __future__ import annotations

import ast
import importlib.metadata
import math
import re
import sys
import tomllib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap

from relevance_nerf2nerf.diffusion.images import colorize, image_to_array, psnr, to_uint8
from relevance_nerf2nerf.evaluation.sheets import save_gif, save_video

ROOT = Path(__file__).resolve().parents[1]


def test_relevance_heatmap_is_the_viewers_colour_map():
    """The CLI's and contact sheets' heatmap equals what the viewer and ns-render show for the same values
    (nerfstudio's default colour map for one-channel outputs)."""
    generator = torch.Generator().manual_seed(0)
    values = torch.cat([torch.linspace(0, 1, 257), torch.rand(300, generator=generator)])
    relevance = values.reshape(1, 1, 1, -1)
    viewer = apply_colormap(values.reshape(1, -1, 1), ColormapOptions())  # (1, N, 3) floats in [0, 1]
    assert np.array_equal(colorize(relevance), to_uint8(viewer).numpy())
    dark, bright = colorize(torch.tensor([[0.0, 1.0]]))[0]
    assert dark.tolist() != bright.tolist()
    assert np.array_equal(colorize(torch.tensor([[float("nan"), 2.0]])), colorize(torch.tensor([[0.0, 1.0]])))


def test_psnr_is_torchmetrics_with_identical_inputs_capped():
    a = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    mse = (a.double() - b.double()).pow(2).mean().item()
    assert math.isclose(psnr(a, b), -10 * math.log10(mse), abs_tol=1e-4)
    assert psnr(a, a) == 100.0
    assert math.isclose(psnr(a[0, 0, 0], b[0, 0, 0]), psnr(a[0, 0, 0:1], b[0, 0, 0:1]), abs_tol=1e-6)


def test_to_uint8_rounds_clamps_and_keeps_shape():
    values = torch.tensor([[-0.5, 0.0, 0.6 / 255, 0.5, 1.0, 1.5]])
    assert to_uint8(values).tolist() == [[0, 0, 1, 128, 255, 255]] and to_uint8(values).dtype == torch.uint8
    assert torch.equal(to_uint8(values.half()), to_uint8(values))
    image = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    array = image_to_array(image)
    assert array.shape == (4, 5, 3) and np.array_equal(array, to_uint8(image[0]).permute(1, 2, 0).numpy())


def test_video_is_an_mp4_beside_the_gif(tmp_path):
    """The MP4 holds the GIF's frames at its size and frame rate; odd sides are padded to even for H.264."""
    ramp = np.linspace(0, 1, 16)[None, None, :, None]  # smooth pictures: H.264 keeps them close
    colours = np.random.default_rng(0).random((5, 1, 1, 3))
    frames = np.broadcast_to(255 * (0.2 + 0.6 * colours * ramp), (5, 11, 16, 3)).round().astype(np.uint8)
    save_gif(frames, tmp_path / "a.gif", scale=3, duration_ms=120)
    save_video(frames, tmp_path / "a.mp4", scale=3, duration_ms=120)
    meta = iio.immeta(tmp_path / "a.mp4", plugin="pyav")
    assert meta["codec"] == "h264" and math.isclose(meta["fps"], 1000 / 120, rel_tol=1e-3)
    video = iio.imread(tmp_path / "a.mp4", plugin="pyav")
    assert video.shape == (5, 34, 48, 3)  # 33 rows padded to 34
    gif = iio.imread(tmp_path / "a.gif", index=None)[..., :3]
    assert np.abs(video[:, :33].astype(int) - gif.astype(int)).mean() < 4  # lossy, but the same pictures


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"relevance_nerf2nerf", "method_configs", "__future__"}


def test_every_directly_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    folders = ("relevance_nerf2nerf", "method_configs")
    imported = set().union(*(_imported_top_levels(ROOT / folder) for folder in folders))
    missing = {name for name in imported if not {_normalise(d) for d in distributions[name]} & declared}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    plugins = {"av"}  # loaded by name through imageio (plugin="pyav"), never imported directly
    unused = declared - plugins - {_normalise(d) for name in imported for d in distributions[name]}
    assert not unused, f"declared but never imported: {sorted(unused)}"


def test_quieting_the_libraries_keeps_the_hub_download_bars():
    import huggingface_hub
    import transformers

    from relevance_nerf2nerf.cli.common import quiet_libraries

    try:
        quiet_libraries()
        assert not huggingface_hub.utils.are_progress_bars_disabled()
    finally:
        transformers.utils.logging.enable_progress_bar()
