"""Evaluation speed (issue 12): what the systems' test passes cost, on real eval batches.

    python -m bench.eval_speed [--smoke]      # part of ``make bench`` (bench.run), or alone

* ``eval_cost``: the same test examples (a ranked task and a generated task from ../shared/data) scored
  by each system — backbone zero-shot, metaprompt (P* ∘ U Vᵀ, l = 100), prompt tuning (l = 100), LoRA —
  through the modules' own ranked-scoring and decoding code, every generated row decoding exactly the
  same number of tokens (no end token can match), so the systems differ only in their forward.
* ``ranked_vs_generated`` (p7): examples/s of ranked scoring vs greedy generation of the same label
  answers (real end token, the modules' budgets) on the same model, task and batches.
* ``decode`` (p8): greedy tokens/s at the eval batch size, ours vs PEFT ``PromptTuning`` ``generate`` on
  the same prompts, model and prompt length, both decoding exactly ``decode_tokens`` per row (and vs HF
  ``generate`` on the ``[prompt, row]`` embeddings, the plain KV-cache reference: PEFT 0.21's prompt
  tuning re-feeds its virtual tokens at every step, see docs/performance.md); and our
  decode-step throughput against ``batch x memory bandwidth / bytes of weights read per step`` with the
  bandwidth measured here (a large tensor copy) in the same run. Also: real end tokens with finished
  rows dropped from the batch vs kept (HF's way).

Random adapters: cost does not depend on what a prompt says when every row decodes the same tokens.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

from bench import cases
from bench.common import FULL, SMOKE, Settings, interleaved_medians
from metaprompt.backbones import load_backbone
from metaprompt.data import MultitaskDataModule
from metaprompt.forward import FastPaths
from metaprompt.forward.inject import prepend_prompt
from metaprompt.forward.prompted import generate
from metaprompt.modules import BackboneOnly, LoRA, PromptTuning, TargetAdaptation

RANKED_TASK, GENERATED_TASK = "rqe", "bioinfer"  # a label task (NLI) and a generated one (relations)


def eval_batches(s: Settings, tasks: str, cache: str) -> tuple[MultitaskDataModule, list[dict]]:
    """The fixed test sample of ``tasks`` (``eval_examples`` per task) in eval batches of ``eval_batch``."""
    dm = MultitaskDataModule(
        tasks=tasks,
        backbone=s.backbone,
        max_length=512,
        k_shot=0,
        batch_size=s.eval_batch,
        max_eval_per_task=s.eval_examples,
        cache_dir=cache,
    )
    dm.setup("test")
    return dm, list(dm.test_dataloader())


def systems(s: Settings, dm: MultitaskDataModule, folder: Path) -> dict:
    """Each system's module on the bench backbone, set up for ``dm``'s tasks."""
    teacher = cases.prompt_tuning(s, n_tasks=2)
    distill = cases.distillation(s, teacher, None)
    distill.export_adapter(str(folder / "metaprompt"))
    common = dict(backbone=s.backbone, task_names=dm.task_names, seed=s.seed)
    out = {
        "backbone": BackboneOnly(**common),
        "metaprompt": TargetAdaptation(metaprompt_adapter=str(folder / "metaprompt"), **common),
        "prompt_tuning": PromptTuning(prompt_length=s.prompt_length, **common),
        "lora": LoRA(**common),
    }
    for module in out.values():
        module.configure_model()
        module.eval()
        module.eval_tasks = dm.eval_tasks()
    return out


def evaluate_fixed_budget(module, batches: list[dict], new_tokens: int):
    """A test pass as the module runs it (ranked rows ranked, the rest decoded), ``new_tokens`` per row."""

    def run() -> None:
        with torch.no_grad():
            for batch in batches:
                ranked = module._rank_batch(batch)
                rows = [i for i, uid in enumerate(batch["uids"]) if uid not in ranked]
                if not rows:
                    continue
                index = torch.tensor(rows)
                task_ids = batch["task_ids"][index]
                generate(
                    module.backbone,
                    batch["prompt_input_ids"][index],
                    batch["prompt_attention_mask"][index],
                    module.prompt_for(task_ids),
                    new_tokens,
                    -1,
                    module.tokenizer.pad_token_id,
                    task_ids=task_ids,
                    fast=module.fast_paths,
                )

    return run


def eval_cost(s: Settings, mods: dict, batches: list[dict]) -> dict:
    times = interleaved_medians(
        {name: evaluate_fixed_budget(m, batches, s.decode_tokens) for name, m in mods.items()}, s.warmup, s.eval_repeats
    )
    return {"seconds": times, "over_backbone": {name: t / times["backbone"] for name, t in times.items()}}


def ranked_vs_generated(s: Settings, module, batches: list[dict]) -> dict:
    """Ranked scoring vs greedy generation (real end token, default budgets) of the same label answers,
    and the prefill both start with (one generated token: the context through the backbone once)."""
    n = sum(len(b["uids"]) for b in batches)

    def ranked() -> None:
        with torch.no_grad():
            for batch in batches:
                module._rank_batch(batch)

    def generated() -> None:
        with torch.no_grad():
            for batch in batches:
                module._generate_texts(batch)

    def prefill() -> None:
        for batch in batches:
            prompt = module.prompt_for(batch["task_ids"])
            generate(
                module.backbone, batch["prompt_input_ids"], batch["prompt_attention_mask"], prompt, 1, -1,
                module.tokenizer.pad_token_id, task_ids=batch["task_ids"], fast=module.fast_paths,
            )  # fmt: skip

    times = interleaved_medians(
        {"ranked": ranked, "generated": generated, "prefill": prefill}, s.warmup, s.eval_repeats
    )
    lengths = [len(module.tokenizer.encode(t)) for b in batches for _, t in module._generate_texts(b)]
    return {f"{k}_examples_per_s": n / t for k, t in times.items()} | {
        "examples": n,
        "generated_tokens_mean": sum(lengths) / max(len(lengths), 1),
    }


def peft_prompt_tuning_from(module) -> torch.nn.Module:
    """PEFT ``PromptTuning`` on a fresh copy of the backbone, holding ``module``'s first task prompt."""
    backbone, _ = load_backbone(module.hparams.backbone)
    prompt = module.prompt_for(torch.tensor([0]))[0]  # [l, d]
    length = prompt.shape[0]
    peft = get_peft_model(
        backbone,
        PromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=length, prompt_tuning_init=PromptTuningInit.RANDOM
        ),
    ).eval()
    with torch.no_grad():
        peft.prompt_encoder["default"].embedding.weight.copy_(prompt)
    return peft


def memory_bandwidth_gb_s(megabytes: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth (read + write bytes / s) of a ``megabytes`` fp32 tensor: the median of ``repeats``."""
    a = torch.ones(megabytes * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)  # touch the pages
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - start)
    return 2 * a.numel() * 4 / sorted(times)[len(times) // 2] / 1e9


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights a decoding step reads: every parameter once (tied embeddings/head once), minus
    the input embedding table (only B rows of it are read) unless it is also the head."""
    params = {p.data_ptr(): p for p in model.parameters()}
    total = sum(p.numel() * p.element_size() for p in params.values())
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    return total if embed.data_ptr() == head.data_ptr() else total - embed.numel() * embed.element_size()


def decode(s: Settings, module, batches: list[dict]) -> dict:
    """p8: ours vs PEFT PromptTuning generate (same prompts and length), and vs the bandwidth bound."""
    batch = max(batches, key=lambda b: len(b["uids"]))  # one full eval batch of the generated task
    ids, mask, task_ids = batch["prompt_input_ids"], batch["prompt_attention_mask"], batch["task_ids"]
    one_task = torch.zeros_like(task_ids)  # PEFT holds one prompt: every row gets task 0's prompt
    prompt = module.prompt_for(one_task).detach()
    pad = module.tokenizer.pad_token_id
    peft = peft_prompt_tuning_from(module)

    def ours(n: int, eos: int = -1, fast: FastPaths | None = None):
        return lambda: generate(module.backbone, ids, mask, prompt, n, eos, pad, task_ids=one_task, fast=fast)

    def theirs(n: int):
        def run() -> None:
            with torch.no_grad():
                peft.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                    num_beams=1, pad_token_id=pad,
                )  # fmt: skip

        return run

    def hf_concat(n: int):  # HF generate on [prompt, row] embeddings: the plain KV-cache reference
        inputs = prepend_prompt(module.backbone.get_input_embeddings(), ids, mask, prompt)

        def run() -> None:
            with torch.no_grad():
                module.backbone.generate(
                    inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask, max_new_tokens=n,
                    min_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=pad,
                )  # fmt: skip

        return run

    n = s.decode_tokens
    times = interleaved_medians(
        {"ours": ours(n), "peft": theirs(n), "hf_generate": hf_concat(n), "ours_one_token": ours(1)},
        s.warmup,
        s.eval_repeats,
    )
    rows = ids.shape[0]
    bandwidth = memory_bandwidth_gb_s()
    step_tokens_per_s = rows * (n - 1) / max(times["ours"] - times["ours_one_token"], 1e-9)
    weights = weight_bytes(module.backbone)
    bound = rows * bandwidth * 1e9 / weights
    eos = module.tokenizer.eos_token_id
    natural = interleaved_medians(
        {
            "drop_finished": ours(s.natural_budget, eos),
            "keep_finished": ours(s.natural_budget, eos, FastPaths(drop_finished_rows=False)),
        },
        s.warmup,
        s.eval_repeats,
    )
    lengths = [len(r) for r in ours(s.natural_budget, eos)()]
    return {
        "rows": rows,
        "new_tokens": n,
        "ours_tokens_per_s": rows * n / times["ours"],
        "peft_tokens_per_s": rows * n / times["peft"],
        "hf_generate_tokens_per_s": rows * n / times["hf_generate"],
        "ours_decode_step_tokens_per_s": step_tokens_per_s,
        "memory_bandwidth_gb_s": bandwidth,
        "weight_bytes_per_step": weights,
        "bound_tokens_per_s": bound,
        "natural_stop": {"budget": s.natural_budget, "lengths": lengths, "seconds": natural},
    }


def run(s: Settings, log=print) -> dict:
    """Every measurement above; returns the numbers ``bench.run`` stores under ``eval_speed``."""
    with tempfile.TemporaryDirectory(prefix="metaprompt-bench-eval-") as scratch:
        folder = Path(scratch)
        dm, batches = eval_batches(s, f"{RANKED_TASK},{GENERATED_TASK}", str(folder / "tokens"))
        mods = systems(s, dm, folder)
        log("eval cost per system (same examples, same decoding budget)")
        cost = eval_cost(s, mods, batches)
        ranked_task = dm.task_names.index(RANKED_TASK)
        generated_task = dm.task_names.index(GENERATED_TASK)
        label_batches = [b for b in batches if set(b["task_ids"].tolist()) == {ranked_task}]
        gen_batches = [b for b in batches if set(b["task_ids"].tolist()) == {generated_task}]
        log("p7: ranked scoring vs generation of the same label answers")
        p7 = ranked_vs_generated(s, mods["prompt_tuning"], label_batches)
        log("p8: greedy decoding vs PEFT PromptTuning generate, and vs the memory-bandwidth bound")
        p8 = decode(s, mods["prompt_tuning"], gen_batches)
    return {"eval_cost": cost, "ranked_vs_generated": p7, "decode": p8}


def summary(out: dict) -> dict:
    """The ratios ``bench/results.json`` keeps at its top level."""
    p7, p8 = out["ranked_vs_generated"], out["decode"]
    natural = p8["natural_stop"]["seconds"]
    return {
        "p7_ranked_over_generate": p7["ranked_examples_per_s"] / p7["generated_examples_per_s"],
        "p8_decode_vs_peft_prompt_tuning": p8["ours_tokens_per_s"] / p8["peft_tokens_per_s"],
        "p8_decode_vs_hf_generate": p8["ours_tokens_per_s"] / p8["hf_generate_tokens_per_s"],
        "p8_decode_fraction_of_bound": p8["ours_decode_step_tokens_per_s"] / p8["bound_tokens_per_s"],
        "p8_drop_finished_speedup": natural["keep_finished"] / natural["drop_finished"],
        "eval_metaprompt_over_backbone": out["eval_cost"]["over_backbone"]["metaprompt"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    out = run(SMOKE if args.smoke else FULL)
    print(json.dumps({**summary(out), "details": out}, indent=2, default=str))


if __name__ == "__main__":
    main()
