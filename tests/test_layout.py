"""The package layout: runs saved with earlier module paths still load, and each layer imports only what it
should (the diffusion core never imports nerfstudio)."""

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
    probe = (
        "import sys, relevance_nerf2nerf, relevance_nerf2nerf.diffusion.editor, "
        "relevance_nerf2nerf.diffusion.crop;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nerfstudio'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
