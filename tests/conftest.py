"""Shared pytest configuration: no test may reach a model hub; one thread per process.

Tiny models on a small shared CPU run several times faster without thread oversubscription, and the
``ns-train`` / ``ns-render`` subprocesses inherit ``OMP_NUM_THREADS``.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_ip2p_dir(tmp_path_factory):
    """A tiny random-weight InstructPix2Pix in diffusers format (save_pretrained), built once per session."""
    from relevance_nerf2nerf.diffusion.tiny import build_instruct_pix2pix

    return build_instruct_pix2pix(tmp_path_factory.mktemp("tiny_ip2p"), seed=0)
