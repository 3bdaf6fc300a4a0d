"""The package layout: runs saved with earlier module paths still load, and each layer imports only what it
should (the diffusion core never imports nerfstudio)."""

import ast
import subprocess
import sys
from pathlib import Path

import yaml
from nerfstudio.engine.trainer import TrainerConfig

from relevance_nerf2nerf.nerf.datamanager import RelevanceDataManager, RelevanceDataManagerConfig
from relevance_nerf2nerf.nerf.nerfacto_model import RelevanceNerfactoModel, RelevanceNerfactoModelConfig
from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipeline
from relevance_nerf2nerf.nerf.trainer import RelevanceTrainer

SAVED = Path(__file__).parent / "data" / "config_layout_0_1_0.yml"


def test_config_saved_with_earlier_module_paths_loads_as_todays_classes():
    text = SAVED.read_text()
    assert "relevance_nerf2nerf.nerf.model.RelevanceNerfactoModel" in text  # the old path is really in it
    config = yaml.load(text, Loader=yaml.Loader)  # what ns-viewer / ns-render / relevance-eval do
    assert isinstance(config, TrainerConfig)
    assert config._target is RelevanceTrainer
    assert config.pipeline._target is RelevanceNerf2NerfPipeline
    assert isinstance(config.pipeline.datamanager, RelevanceDataManagerConfig)
    assert config.pipeline.datamanager._target is RelevanceDataManager
    assert isinstance(config.pipeline.model, RelevanceNerfactoModelConfig)
    assert config.pipeline.model._target is RelevanceNerfactoModel
    assert config.pipeline.instruction == "make the cube blue"


def test_diffusion_core_never_imports_nerfstudio():
    """Not on import, nor when drawing a relevance heatmap or a PSNR (matplotlib's and torchmetrics' code)."""
    probe = (
        "import sys, torch, relevance_nerf2nerf, relevance_nerf2nerf.diffusion.editor, "
        "relevance_nerf2nerf.diffusion.crop;"
        "from relevance_nerf2nerf.diffusion.images import colorize, psnr;"
        "colorize(torch.rand(4, 4)); psnr(torch.rand(4), torch.rand(4));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nerfstudio'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _literal_setting_defaults(path: Path) -> list[str]:
    """``name=<number>`` defaults of edit settings in the functions and dataclass fields of one file."""
    names = {"text_guidance", "image_guidance", "t_rel", "mask_threshold"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        pairs = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            positional = node.args.posonlyargs + node.args.args
            with_default = positional[len(positional) - len(node.args.defaults) :]
            pairs += zip(with_default, node.args.defaults, strict=True)
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d]
            pairs = [(a.arg, d) for a, d in pairs]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            pairs = [(node.target.id, node.value)]
        for name, default in pairs:
            if name in names and isinstance(default, ast.Constant) and type(default.value) in (int, float):
                found.append(f"{path}:{default.lineno} {name}={default.value}")
    return found


def test_edit_setting_defaults_are_stated_only_in_the_settings_module():
    root = Path(__file__).parent.parent
    folders = ("relevance_nerf2nerf", "benchmarks", "method_configs")
    files = [p for folder in folders for p in (root / folder).rglob("*.py")]
    restated = [hit for p in files if p.name != "settings.py" for hit in _literal_setting_defaults(p)]
    assert restated == []  # use relevance_nerf2nerf.diffusion.settings.DEFAULTS
    assert _literal_setting_defaults(root / "relevance_nerf2nerf" / "diffusion" / "settings.py")  # it finds
