"""The nerfstudio layer imports diffusers lazily: ns-train --help, ns-render and ns-viewer never load it."""

import subprocess
import sys

PROBE = """
import sys
from nerfstudio.plugins.registry import discover_methods
import nerfstudio.scripts.render, nerfstudio.scripts.viewer.run_viewer, nerfstudio.scripts.eval
methods, _ = discover_methods()
print(sorted(m for m in methods if "relevance" in m or m.endswith(("facto-tiny", "facto-cpu"))))
print("heavy:", sorted(m for m in ("diffusers", "transformers") if m in sys.modules))
"""


def test_method_discovery_does_not_import_diffusers():
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE], capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert out[-2] == str(
        [
            "nerfacto-cpu",
            "nerfacto-tiny",
            "relevance-nerf2nerf",
            "relevance-nerf2nerf-cpu",
            "relevance-nerf2nerf-small",
            "relevance-nerf2nerf-tiny",
            "relevance-splatfacto",
            "relevance-splatfacto-cpu",
            "relevance-splatfacto-tiny",
            "splatfacto-cpu",
            "splatfacto-tiny",
        ]
    )
    assert out[-1] == "heavy: []"
