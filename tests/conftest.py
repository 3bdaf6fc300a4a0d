"""Shared pytest configuration: no test may reach a model hub; one thread per process.

Tiny models on a small shared CPU run several times faster without thread oversubscription, and the
``ns-train`` / ``ns-render`` subprocesses inherit ``OMP_NUM_THREADS``.
"""

import os
import sys

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


@pytest.fixture(autouse=True)
def no_stale_event_writers():
    """Tests train several nerfstudio runs in one process: drop each test's event writers afterwards (see
    ``nerf.trainer.release_event_writers``), so no later run logs into a folder a test has removed."""
    yield
    if "nerfstudio.utils.writer" in sys.modules:
        from relevance_nerf2nerf._testing import release_event_writers

        release_event_writers()


@pytest.fixture(scope="session")
def tiny_ip2p_dir(tmp_path_factory):
    """A tiny random-weight InstructPix2Pix in diffusers format (save_pretrained), built once per session."""
    from relevance_nerf2nerf.toy_editor.build import build_instruct_pix2pix

    return build_instruct_pix2pix(tmp_path_factory.mktemp("tiny_ip2p"), seed=0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random-weight CLIPModel with its tokenizer and image processor (save_pretrained), built once.
    It measures nothing: it only exercises the CLIP code path offline."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from relevance_nerf2nerf.toy_editor.build import (
        DEFAULT_WORDS,
        SPECIAL_END,
        SPECIAL_START,
        write_clip_tokenizer,
    )

    directory = tmp_path_factory.mktemp("tiny_clip")
    write_clip_tokenizer(directory, [*DEFAULT_WORDS, "photo", "cone", "cylinder"], model_max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=16, pad_token=SPECIAL_END)
    vocab = tokenizer.get_vocab()
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab[SPECIAL_START],
                eos_token_id=vocab[SPECIAL_END], pad_token_id=vocab[SPECIAL_END])  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(directory)
    return directory
