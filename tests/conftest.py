"""Shared pytest configuration: no test may reach a model hub; one thread per process.

Tiny models on a small shared CPU run several times faster without thread oversubscription, and the
``ns-train`` / ``ns-render`` subprocesses inherit ``OMP_NUM_THREADS``.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state (nerfstudio also draws from ``random``)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_ip2p_dir(tmp_path_factory):
    """A tiny random-weight InstructPix2Pix in diffusers format (save_pretrained), built once per session."""
    from relevance_nerf2nerf.diffusion.tiny import build_instruct_pix2pix

    return build_instruct_pix2pix(tmp_path_factory.mktemp("tiny_ip2p"), seed=0)
