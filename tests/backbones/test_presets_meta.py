"""The 8B/20B presets build offline on the meta device with their published parameter counts, and
every stage/baseline of the method trains < 0.05% of each (method.md §7)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from metaprompt.backbones import PRESETS, architecture_config, build_on_meta
from metaprompt.backbones.loading import quantization_kwargs
from metaprompt.prompts import DecomposedPrompt, SoftPrompt

# LLaMA-3.1-8B: 8,030,261,248 (method.md §7; = LlamaFactory#3529's 8,033,669,120 minus 3,407,872 LoRA).
# gpt-oss-20b: our configs/gpt-oss-20b.json (the hub config.json) gives, per layer,
#   attention 2*2880*4096 + 2*2880*512 + biases (4096+512+512+2880) + sinks 64    =  26,550,144
#   router 32*2880 + 32                                                          =      92,192
#   experts 32*(2880*5760 + 5760) + 32*(2880*2880 + 2880)                        = 796,538,880
#   two RMSNorms 2*2880                                                          =       5,760
# = 823,186,976 x 24 layers = 19,756,487,424, + embeddings and untied head 2*201088*2880
# = 1,158,266,880, + final norm 2,880 -> 20,914,757,184 ("21B" on the model card).
EXPECTED_PARAMS = {"llama-3.1-8b": 8_030_261_248, "meditron3-8b": 8_030_261_248, "gpt-oss-20b": 20_914_757_184}
HIDDEN = {"llama-3.1-8b": 4096, "meditron3-8b": 4096, "gpt-oss-20b": 2880}
PROMPT_LENGTH, SOURCES, MPT_RANK, LORA_RANK = 100, 21, 1, 8


def _count(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_preset_builds_on_meta_with_the_published_parameter_count(name):
    model = build_on_meta(name)
    params = list(model.parameters())
    assert all(p.is_meta and not p.requires_grad for p in params)
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert _count(model) == EXPECTED_PARAMS[name]
    assert model.get_input_embeddings().weight.shape[-1] == HIDDEN[name]


def test_architectures_match_the_issue():
    llama = architecture_config("llama-3.1-8b")
    assert (llama.num_hidden_layers, llama.num_attention_heads, llama.num_key_value_heads) == (32, 32, 8)
    assert (llama.intermediate_size, llama.vocab_size) == (14336, 128256)
    assert llama.rope_parameters["rope_type"] == "llama3" and llama.rope_parameters["rope_theta"] == 500000.0
    assert architecture_config("meditron3-8b").to_dict() == {**llama.to_dict(), "_name_or_path": ""}
    oss = architecture_config("gpt-oss-20b")
    assert (oss.num_hidden_layers, oss.hidden_size, oss.num_attention_heads, oss.head_dim) == (24, 2880, 64, 64)
    assert (oss.num_local_experts, oss.num_experts_per_tok, oss.intermediate_size) == (32, 4, 2880)
    assert (oss.vocab_size, oss.sliding_window) == (201088, 128)
    assert oss.layer_types == ["sliding_attention", "full_attention"] * 12
    shallow = architecture_config("gpt-oss-20b", num_hidden_layers=4)
    assert shallow.num_hidden_layers == 4 and shallow.layer_types == oss.layer_types[:4]


def test_gpt_oss_is_dequantised_from_mxfp4_for_training():
    assert PRESETS["gpt-oss-20b"].quantization == "mxfp4"
    config = quantization_kwargs("gpt-oss-20b")["quantization_config"]
    assert type(config).__name__ == "Mxfp4Config" and config.dequantize is True
    assert quantization_kwargs("llama-3.1-8b") == {}


def _trainable_counts(name: str) -> dict[str, int]:
    """Trainable parameters of each stage/baseline, counted on the real modules (LoRA via PEFT on meta)."""
    d = HIDDEN[name]
    teacher = SoftPrompt(1, PROMPT_LENGTH, d)  # one teacher per source task
    metaprompt = DecomposedPrompt(SOURCES, PROMPT_LENGTH, d, MPT_RANK)  # P* + K (u, v)
    target = DecomposedPrompt(1, PROMPT_LENGTH, d, MPT_RANK)
    target.shared_prompt.requires_grad_(False)  # target stage trains (u, v) only
    prompt_tuning = SoftPrompt(1, PROMPT_LENGTH, d)
    lora = get_peft_model(build_on_meta(name), LoraConfig(r=LORA_RANK, target_modules=["q_proj", "v_proj"]))
    return {
        "teacher (per task, l*d)": _count(teacher, True),
        "metaprompt (l*d + K*(l+d))": _count(metaprompt, True),
        "target (l+d)": _count(target, True),
        "prompt tuning (l*d)": _count(prompt_tuning, True),
        "LoRA r=8 q,v": _count(lora, True),
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_every_stage_trains_under_0_05_percent(name):
    d, total = HIDDEN[name], EXPECTED_PARAMS[name]
    counts = _trainable_counts(name)
    assert counts["teacher (per task, l*d)"] == counts["prompt tuning (l*d)"] == PROMPT_LENGTH * d
    assert counts["metaprompt (l*d + K*(l+d))"] == PROMPT_LENGTH * d + SOURCES * (PROMPT_LENGTH + d)
    assert counts["target (l+d)"] == PROMPT_LENGTH + d
    for stage, n in counts.items():
        print(f"{name:14s} {stage:28s} {n:>11,d} = {100 * n / total:.6f}%")
        assert 0 < n / total < 0.0005, f"{name} {stage}: {n} trainable = {100 * n / total:.4f}% (>= 0.05%)"
    if name == "llama-3.1-8b":
        assert counts["LoRA r=8 q,v"] == 3_407_872  # 0.0424% (method.md §7, LlamaFactory#3529)
