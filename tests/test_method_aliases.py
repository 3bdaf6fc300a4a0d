"""Each CPU preset ``<name>-tiny`` is also registered as ``<name>-cpu``, a name that says where it runs: the
same settings and classes, so a run started under the alias trains, loads and renders like the preset's."""

from __future__ import annotations

import copy

import tyro
import yaml
from nerfstudio.plugins.registry import discover_methods

ALIASES = {
    "nerfacto-cpu": "nerfacto-tiny",
    "relevance-nerf2nerf-cpu": "relevance-nerf2nerf-tiny",
    "splatfacto-cpu": "splatfacto-tiny",
    "relevance-splatfacto-cpu": "relevance-splatfacto-tiny",
}


def test_each_cpu_alias_is_discovered_with_its_presets_config_and_description():
    methods, descriptions = discover_methods()  # what ns-train lists: the installed entry points
    for alias, preset in ALIASES.items():
        config = methods[alias]
        assert config.method_name == alias
        assert config.pipeline is not methods[preset].pipeline  # a copy: changing one leaves the other
        renamed = copy.deepcopy(config)
        renamed.method_name = preset
        assert renamed == methods[preset], alias
        assert descriptions[alias].startswith(f"Alias of {preset} (the CPU preset"), descriptions[alias]


def test_a_run_under_an_alias_writes_the_config_yml_of_its_preset_but_for_the_name():
    """ns-viewer and ns-render rebuild a run from its config.yml (``yaml.dump`` of the parsed config)."""
    methods, _ = discover_methods()
    for alias, preset in ALIASES.items():
        written, preset_written = yaml.dump(methods[alias]), yaml.dump(methods[preset])
        assert written == preset_written.replace(f"method_name: {preset}\n", f"method_name: {alias}\n")
        assert yaml.load(written, Loader=yaml.Loader) == methods[alias]  # how ns-render reads it back


def test_ns_train_parses_each_alias_with_flags():
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    for alias in ALIASES:  # ns-train's own parser
        config = tyro.cli(AnnotatedBaseConfigUnion, args=[alias, "--max-num-iterations", "7"])
        assert (config.method_name, config.max_num_iterations) == (alias, 7)
