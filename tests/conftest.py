"""Shared pytest configuration: no test may reach a model hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ip2p_dir(tmp_path_factory):
    """A tiny random-weight InstructPix2Pix in diffusers format (save_pretrained), built once per session."""
    from relevance_nerf2nerf.diffusion.tiny import build_instruct_pix2pix

    return build_instruct_pix2pix(tmp_path_factory.mktemp("tiny_ip2p"), seed=0)
