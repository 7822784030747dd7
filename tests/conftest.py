"""Shared fixtures: offline environment, data root, the real SmolLM2 tokenizer, tiny backbones."""

from __future__ import annotations

import os

# Tests never touch a hub: set before transformers/datasets are imported anywhere.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from metaprompt.tasks.catalog import default_data_root  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (tiny matmuls: threads only add contention); use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_root():
    """The real data root (../shared/data or $METAPROMPT_DATA); skips the test when absent."""
    root = default_data_root()
    if root is None:
        pytest.skip("real data (../shared/data) not present")
    return root


@pytest.fixture(scope="session")
def tokenizer():
    """The real SmolLM2 tokenizer (converted once from the embedded GGUF)."""
    from metaprompt.backbones import load_tokenizer

    return load_tokenizer("tiny-llama")


@pytest.fixture(scope="session")
def tiny_llama():
    from metaprompt.backbones import load_backbone

    return load_backbone("tiny-llama")
