"""What the bench runs: our stage modules and PEFT's equivalents, each as a zero-argument step.

Ours go through the real module code (``compute_loss`` -> ``forward`` -> ``prompted_forward``), PEFT's
through ``get_peft_model`` and the model's own ``forward(labels=...)`` / ``generate``. A training step is
``zero_grad + loss + backward + AdamW step`` on both sides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, get_peft_model

from bench.common import Settings, rows
from metaprompt.backbones import load_backbone, load_tokenizer
from metaprompt.data.collate import CausalLMCollator
from metaprompt.forward import FastPaths
from metaprompt.forward.prompted import generate
from metaprompt.modules import MultitaskDistillation, TeacherPromptTuning


def task_names(n: int) -> list[str]:
    return [f"task{i}" for i in range(n)]


def prompt_tuning(s: Settings, n_tasks: int = 1, fast: dict | None = None) -> TeacherPromptTuning:
    """Our teacher prompt tuning on the bench backbone, configured and in train mode."""
    module = TeacherPromptTuning(
        backbone=s.backbone, task_names=task_names(n_tasks), prompt_length=s.prompt_length, seed=s.seed, fast_paths=fast
    )
    module.configure_model()
    return module.train()


def train_rows(s: Settings, tokens: int, n_tasks: int = 1) -> list[dict]:
    """``batch_size`` encoded rows of ``tokens`` tokens (the last ``target_tokens`` are the target)."""
    return rows(s, tokens, s.batch_size, list(range(n_tasks)), len(load_tokenizer(s.backbone)))


def train_batch(s: Settings, tokens: int, n_tasks: int = 1) -> dict:
    """The right-padded training batch of :func:`train_rows`."""
    return CausalLMCollator(load_tokenizer(s.backbone).pad_token_id)(train_rows(s, tokens, n_tasks))


def our_step(module, batch: dict, fast: FastPaths | None = None, attention: str | None = None) -> Callable[[], None]:
    """One training step of a stage module (its ``compute_loss``: CE, or distillation).

    ``fast`` / ``attention`` (an HF attention implementation): used for this step only, the module's
    own settings are restored after it, so differently switched steps can be timed round-robin.
    """
    opt = torch.optim.AdamW([p for _, p in module.trainable_parameters()], lr=1e-3)

    def step() -> None:
        saved_fast, saved_attention = module.fast_paths, module.backbone.config._attn_implementation
        module.fast_paths = fast or saved_fast
        if attention:
            module.backbone.set_attn_implementation(attention)
        try:
            opt.zero_grad(set_to_none=True)
            module.compute_loss(batch)["loss"].backward()
            opt.step()
        finally:
            module.fast_paths = saved_fast
            if attention:
                module.backbone.set_attn_implementation(saved_attention)

    return step


def our_forward(module, batch: dict) -> Callable[[], None]:
    """A no-grad forward of the same batch, done our way: the validation-loss forward, same fast paths
    as the step (loss only, like ``compute_loss``)."""

    def forward() -> None:
        with torch.no_grad():
            module.forward(batch, need_logits=False)

    return forward


def peft_prompt_tuning(s: Settings) -> torch.nn.Module:
    """PEFT ``PromptTuning`` (l virtual tokens) on a fresh copy of the same backbone."""
    backbone, _ = load_backbone(s.backbone, seed=s.seed)
    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=s.prompt_length, prompt_tuning_init=PromptTuningInit.RANDOM
    )
    return get_peft_model(backbone, config).train()


def peft_step(model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        opt.step()

    return step


def distillation(s: Settings, teacher: TeacherPromptTuning, cache_rows: list[dict] | None) -> MultitaskDistillation:
    """Our distillation from ``teacher``'s prompts; with ``cache_rows``, the teacher cache built over them."""
    scratch = tempfile.TemporaryDirectory(prefix="metaprompt-bench-")  # removed with the module (or at exit)
    folder = Path(scratch.name)
    teacher.export_adapter(str(folder / "teacher"))
    module = MultitaskDistillation(
        teacher_adapter=str(folder / "teacher"),
        backbone=s.backbone,
        task_names=list(teacher.task_names),
        prompt_length=s.prompt_length,
        seed=s.seed,
    )
    module.configure_model()
    if cache_rows is not None:
        module.teacher_cache = module.build_teacher_cache(folder / "teacher_cache", cache_rows)
    module._bench_scratch = scratch
    return module.train()


def generation_batch(s: Settings, n_tasks: int) -> dict:
    """``gen_tasks * gen_rows_per_task`` prompts of ``gen_input_tokens``, row i of task ``i % n_tasks``."""
    tokenizer = load_tokenizer(s.backbone)
    n = s.gen_tasks * s.gen_rows_per_task
    data = rows(s, s.gen_input_tokens + s.target_tokens, n, list(range(n_tasks)), len(tokenizer))
    for row in data:
        row["prompt_ids"] = row["prompt_ids"][: s.gen_input_tokens]
    return CausalLMCollator(tokenizer.pad_token_id, eval_mode=True)(data)


def our_generation(
    module, batch: dict, s: Settings, fast: dict | None = None, n: int | None = None
) -> Callable[[], None]:
    """Greedy decoding of exactly ``n`` (default ``gen_new_tokens``) per row (no end-of-sequence id can match)."""

    def run() -> None:
        generate(
            module.backbone,
            batch["prompt_input_ids"],
            batch["prompt_attention_mask"],
            module.prompt_for(batch["task_ids"]).detach(),
            n or s.gen_new_tokens,
            eos_token_id=-1,
            pad_token_id=module.tokenizer.pad_token_id,
            task_ids=batch["task_ids"],
            fast=fast if fast is not None else module.fast_paths,
        )

    return run


def peft_lora_mixed(s: Settings, n_adapters: int) -> torch.nn.Module:
    """PEFT LoRA r=8 on q, v with ``n_adapters`` adapters, for mixed-adapter batches (``adapter_names``)."""
    backbone, _ = load_backbone(s.backbone, seed=s.seed)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(backbone, config, adapter_name="task0")
    for i in range(1, n_adapters):
        model.add_adapter(f"task{i}", config)
    return model.eval()


def peft_lora_generation(model, batch: dict, s: Settings, pad_token_id: int) -> Callable[[], None]:
    names = [f"task{t}" for t in batch["task_ids"].tolist()]

    def run() -> None:
        with torch.no_grad():
            model.generate(
                input_ids=batch["prompt_input_ids"],
                attention_mask=batch["prompt_attention_mask"],
                adapter_names=names,
                max_new_tokens=s.gen_new_tokens,
                min_new_tokens=s.gen_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_token_id,
            )

    return run
