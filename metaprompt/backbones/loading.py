"""``load_backbone``: one call that returns a ready (model, tokenizer) pair for any backbone."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from metaprompt.backbones import embedded, tiny
from metaprompt.backbones.presets import PRESETS
from metaprompt.scale.zero import outside_zero_init, without_zero3_init


class BackboneUnavailableError(RuntimeError):
    """The backbone is neither local nor downloadable (offline, gated, or a typo)."""


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0", "false") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _prepare_tokenizer(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Batched generation needs a pad token and left padding; causal LMs often ship without one.
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _hub_error(name: str, err: Exception) -> BackboneUnavailableError:
    hint = (
        "the hub is switched off here (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set)"
        if _offline()
        else "it could not be downloaded (no network, a gated model without `hf auth login`, or a wrong id)"
    )
    return BackboneUnavailableError(
        f"backbone {name!r} is not a local folder and {hint}. Download it where you have internet "
        f"(`hf download {name}`) and pass the local folder, or use a preset: {', '.join(PRESETS)}. "
        f"[{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}]"
    )


def _resolve(name_or_path: str) -> tuple[str, torch.dtype | None]:
    """Map a preset name to its source; anything else is a local folder or hub id."""
    preset = PRESETS.get(name_or_path)
    if preset is None:
        if not Path(name_or_path).expanduser().is_dir() and name_or_path.count("/") != 1:
            raise BackboneUnavailableError(
                f"backbone {name_or_path!r} is neither a preset ({', '.join(PRESETS)}), a local folder, "
                "nor a hub id of the form owner/name"
            )
        return str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().is_dir() else name_or_path, None
    return preset.source, preset.dtype


def quantization_kwargs(name_or_path: str) -> dict:
    """Extra ``from_pretrained`` kwargs for presets whose hub weights are quantised.

    gpt-oss ships its experts in MXFP4; training through them is refused ("quantization method do
    not support training", transformers#39969) and ZeRO-3/FSDP cannot shard them, so they are
    dequantised to the preset dtype (bf16) on load: ``Mxfp4Config(dequantize=True)``.
    """
    preset = PRESETS.get(name_or_path)
    if preset is None or preset.quantization is None:
        return {}
    if preset.quantization == "mxfp4":
        from transformers import Mxfp4Config

        return {"quantization_config": Mxfp4Config(dequantize=True)}
    raise ValueError(f"preset {name_or_path!r}: unknown quantization {preset.quantization!r}")


def _import_architecture(folder: str) -> None:
    """Import the model's modeling module outside any active ``deepspeed.zero.Init``.

    zero.Init re-wraps ``__init__`` of classes *defined* while it is active and, when it pauses (as
    ``deepspeed.initialize`` does), restores the undecorated one: transformers' decorated MoE classes
    (``GptOssExperts``) then lose their ``config`` for every later instance in the process.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    with outside_zero_init():
        config = AutoConfig.from_pretrained(folder)
        if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
            MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # the lazy mapping imports the class


def load_tokenizer(name_or_path: str = "smollm2-135m") -> PreTrainedTokenizerBase:
    """The tokenizer of a backbone (tiny backbones use SmolLM2's)."""
    source, _ = _resolve(name_or_path)
    if source.startswith(("embedded:", "tiny:")):
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(embedded.tokenizer_folder()))
    try:
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(source))
    except OSError as e:
        raise _hub_error(source, e) from e


def load_backbone(
    name_or_path: str = "smollm2-135m", dtype: torch.dtype | str | None = None, seed: int = 0
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load a frozen causal LM and its tokenizer.

    Args:
        name_or_path: A preset name (see ``PRESETS``), a local HF model folder, or a hub id.
        dtype: Weight dtype (``torch.bfloat16`` or ``"bfloat16"``); default: the preset's, else fp32.
        seed: Init seed for the random tiny backbones (ignored otherwise).

    Returns:
        ``(model, tokenizer)``: the model in eval mode with every parameter frozen
        (``requires_grad=False``); the tokenizer with a pad token set.

    Raises:
        BackboneUnavailableError: the name is not local and cannot be downloaded.

    Under DeepSpeed ZeRO-3 the caller keeps a ``transformers.integrations.HfDeepSpeedConfig`` alive
    first (``metaprompt.scale.zero3_hf_config``), so ``from_pretrained`` loads straight into partitions.
    """
    source, preset_dtype = _resolve(name_or_path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or preset_dtype or torch.float32
    tokenizer = load_tokenizer(name_or_path)
    if source.startswith("tiny:"):
        # Built whole, with the same random init as on one device; under ZeRO-3, deepspeed.initialize
        # partitions it later (transformers would skip the init inside zero.Init).
        with without_zero3_init():
            model = tiny.build_tiny(source.split(":", 1)[1], len(tokenizer), tokenizer.pad_token_id, seed, dtype)
    else:
        folder = str(embedded.model_folder()) if source.startswith("embedded:") else source
        try:
            _import_architecture(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **quantization_kwargs(name_or_path))
        except OSError as e:
            raise _hub_error(folder, e) from e
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer
