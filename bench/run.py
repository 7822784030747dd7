"""The benchmark: our prompt-method steps vs PEFT on the same backbone and batch, in one process.

    python -m bench.run                 # SmolLM2-135M, fp32, CPU (``make bench``; ~35 min on 2 idle cores)
    python -m bench.run --smoke         # tiny backbone, seconds (``make bench-smoke``, and a test)

Writes ``--out`` (default ``bench/results.json``) and, next to it, the markdown tables of ``bench.report`` (printed too).
Timings are medians after warm-up, measured round-robin between the compared paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
import transformers

from bench import cases, eval_speed, real_batches, startup
from bench.common import FULL, SMOKE, Settings, interleaved_medians, machine, run_subprocess
from bench.padding import padding
from bench.report import TARGETS, markdown, met
from bench.sizes import lora_bytes, target_adapter_bytes
from metaprompt.forward import FastPaths

ABLATIONS = {  # one switch away from the defaults (shared prefix and target-only logits off: PEFT's path, p1)
    "no_shared_prefix": {"shared_prefix": False},
    "full_logits": {"target_only_logits": False},
    "no_fused_loss": {"fused_loss": False},
    "activation_checkpointing": {"activation_checkpointing": True},
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def training(s: Settings, ours) -> dict:
    """p1 (ours vs PEFT PromptTuning at two lengths), p2 (step / no-grad forward), fast-path ablations."""
    peft = cases.peft_prompt_tuning(s)
    out = {}
    for tokens, repeats in ((s.tokens, s.repeats), (s.long_tokens, s.long_repeats)):
        batch = cases.train_batch(s, tokens)
        fns = {"ours_step": cases.our_step(ours, batch), "peft_step": cases.peft_step(peft, batch)}
        if tokens == s.tokens:
            fns["ours_forward"] = cases.our_forward(ours, batch)
        out[str(tokens)] = interleaved_medians(fns, s.warmup, repeats)
    del peft
    out["ablations_step_s"] = ablations(s, ours, cases.train_batch(s, s.tokens))
    return out


def ablations(s: Settings, ours, batch: dict) -> dict:
    """Our step with one switch flipped, each timed round-robin with the defaults (one ratio per switch)."""
    fns = {"defaults": cases.our_step(ours, batch, FastPaths())}
    fns.update({name: cases.our_step(ours, batch, FastPaths(**switches)) for name, switches in ABLATIONS.items()})
    fns["eager_attention"] = cases.our_step(ours, batch, attention="eager")
    out = interleaved_medians(fns, s.warmup, s.long_repeats)
    # emulated bf16 GEMMs (no avx512_bf16/amx here) are ~30x slower: one step shows it and saves ~10 min
    warmup, repeats = (s.warmup, s.long_repeats) if bf16_hardware() else (0, 1)
    bf16 = {"bf16_autocast": cases.our_step(ours, batch, FastPaths(bf16_autocast=True))}
    return {**out, **interleaved_medians(bf16, warmup, repeats)}


def bf16_hardware() -> bool:
    """Whether this CPU has bf16 matmul instructions (without them oneDNN emulates bf16 GEMMs)."""
    return torch.cuda.is_available() or bool(machine().get("bf16_instructions"))


def distillation(s: Settings, teacher) -> dict:
    """p3: a distillation step (teacher cache; and with the online teacher) / a prompt-tuning step."""
    data = cases.train_rows(s, s.tokens)
    batch = cases.train_batch(s, s.tokens)
    start = time.perf_counter()
    cached = cases.distillation(s, teacher, data)
    build_s = time.perf_counter() - start
    online = cases.distillation(s, teacher, None)
    fns = {
        "pt_step": cases.our_step(teacher, batch),
        "distill_cached_step": cases.our_step(cached, batch),
        "distill_online_step": cases.our_step(online, batch),
    }
    out = interleaved_medians(fns, s.warmup, s.repeats)
    out["cache_setup_s"] = build_s
    return out


def generation(s: Settings) -> dict:
    """p4: tokens/s of a batch mixing ``gen_tasks`` tasks vs one task; ours vs PEFT LoRA ``adapter_names``."""
    module = cases.prompt_tuning(s, n_tasks=s.gen_tasks).eval()
    lora = cases.peft_lora_mixed(s, s.gen_tasks)
    single, mixed = cases.generation_batch(s, 1), cases.generation_batch(s, s.gen_tasks)
    pad = module.tokenizer.pad_token_id
    cold, concat = {"reuse_prefix": False}, {"shared_prefix": False}
    fns = {  # warm: the prefix memo holds the frozen prompts, as in every eval batch after the first
        "ours_single": cases.our_generation(module, single, s),
        "ours_mixed": cases.our_generation(module, mixed, s),
        "ours_single_cold": cases.our_generation(module, single, s, cold),
        "ours_mixed_cold": cases.our_generation(module, mixed, s, cold),
        "ours_concat_mixed": cases.our_generation(module, mixed, s, concat),
        "peft_lora_single": cases.peft_lora_generation(lora, single, s, pad),
        "peft_lora_mixed": cases.peft_lora_generation(lora, mixed, s, pad),
    }
    times = interleaved_medians(fns, s.warmup, s.repeats)
    tokens = single["prompt_input_ids"].shape[0] * s.gen_new_tokens
    return {f"{name}_tokens_per_s": tokens / t for name, t in times.items()}


def memory(smoke: bool) -> dict:
    """Peak RSS of a training step, each case in a fresh interpreter (the smoke run skips checkpointing)."""
    flag = ["--smoke"] if smoke else []
    names = ("ours", "peft") if smoke else ("ours", "ours_checkpointing", "peft", "distill_long", "distill_long_logits")
    return {case: json.loads(run_subprocess(["bench.rss", case, *flag])) for case in names}


def summarize(
    s: Settings, train: dict, distill: dict, gen: dict, sizes: dict, rss: dict, evals: dict, start: dict, real: dict
) -> dict:
    short, long = train[str(s.tokens)], train[str(s.long_tokens)]
    small, large = (real[str(n)] for n in (min(s.real_prompt_lengths), max(s.real_prompt_lengths)))
    return {
        "p1_train_vs_peft": short["peft_step"] / short["ours_step"],
        f"p1_train_vs_peft_{s.long_tokens}": long["peft_step"] / long["ours_step"],
        "p1_real_batches_vs_peft": large["grouped_vs_peft"],
        "p1_real_batches_vs_peft_short_prompt": small["grouped_vs_peft"],
        "p1_real_mixed_vs_peft": large["mixed_vs_peft"],
        "p1_real_mixed_vs_peft_short_prompt": small["mixed_vs_peft"],
        "p2_step_over_forward": short["ours_step"] / short["ours_forward"],
        "p3_distill_over_pt": distill["distill_cached_step"] / distill["pt_step"],
        "p3_online_teacher_over_pt": distill["distill_online_step"] / distill["pt_step"],
        "p4_mixed_over_single": gen["ours_mixed_tokens_per_s"] / gen["ours_single_tokens_per_s"],
        "p4_mixed_vs_peft_lora": gen["ours_mixed_tokens_per_s"] / gen["peft_lora_mixed_tokens_per_s"],
        "p4_cold_mixed_over_single": gen["ours_mixed_cold_tokens_per_s"] / gen["ours_single_cold_tokens_per_s"],
        "p4_cold_mixed_vs_peft_lora": gen["ours_mixed_cold_tokens_per_s"] / gen["peft_lora_mixed_tokens_per_s"],
        "p5_target_bytes": sizes["target_adapter"]["llama-3.1-8b"]["tensor_bytes"],
        **eval_speed.summary(evals),
        "p9_second_start_over_first": start["fit"]["second_over_first"],
        "p9_test_second_start_over_first": start["test"]["second_over_first"],
        "peak_rss_mb": {case: r["peak_rss_mb"] for case, r in rss.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny backbone, small sizes (seconds)")
    parser.add_argument("--out", default="bench/results.json")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    torch.manual_seed(s.seed)
    transformers.logging.set_verbosity_error()  # e.g. "eos_token_id -1": on purpose, every row decodes fully
    warnings.filterwarnings("ignore", category=FutureWarning)
    started = time.perf_counter()
    ours = cases.prompt_tuning(s)
    log("p1/p2: training steps, ours vs PEFT PromptTuning; fast-path ablations")
    train = training(s, ours)
    log("p1 on real batches (the teacher stage's sampler, clinical21)")
    real = real_batches.run(s, "gad,rqe,kqa_nli" if args.smoke else "clinical21", log)
    log("p3: distillation steps")
    distill = distillation(s, ours)
    del ours
    log("p4: generation throughput")
    gen = generation(s)
    sizes = {
        "target_adapter": {
            p: target_adapter_bytes(p, prompt_length=100, rank=1) for p in ("llama-3.1-8b", "smollm2-135m")
        },
        "lora_r8_qv": {p: lora_bytes(p) for p in ("llama-3.1-8b", "smollm2-135m")},
    }
    log("evaluation: cost per system, ranked vs generated, decoding vs PEFT and the bandwidth bound")
    evals = eval_speed.run(s, log)
    log("p9: start-up, cold and warm token cache (fresh interpreters)")
    start = startup.run(*(("gad,rqe", "tiny-llama") if args.smoke else ("clinical21", s.backbone)), log)
    log("peak RSS, one fresh interpreter per case")
    rss = memory(args.smoke)
    summary = summarize(s, train, distill, gen, sizes, rss, evals, start, real)
    targets = {k: met(k, summary[k]) for k in TARGETS}
    results = {
        **{k: v for k, v in summary.items()},
        "summary": summary,
        "targets": targets,
        "settings": s.as_dict(),
        "smoke": args.smoke,
        "machine": machine(),
        "timings_s": {"training": train, "distillation": distill},
        "generation": gen,
        "sizes": sizes,
        "memory": rss,
        "eval_speed": evals,
        "real_batches": real,
        "startup": start,
        "padding_fraction": padding(s.backbone, s.batch_size, args.smoke),  # (tokenises real data once)
        "attn_implementation": ours_attention(s),
        "fast_paths_default": FastPaths().as_dict(),
        "wall_s": time.perf_counter() - started,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    report = Path(args.out).with_suffix(".md")  # the tables the README's "Performance" section copies
    report.write_text(markdown(results))
    print(report.read_text(), end="")
    print(f"wrote {args.out} and {report} in {results['wall_s']:.0f} s")


def ours_attention(s: Settings) -> dict:
    """The attention implementation each backbone loads with (SDPA where HF supports it)."""
    from metaprompt.backbones import load_backbone

    out = {}
    for name in dict.fromkeys((s.backbone, "tiny-llama", "tiny-gpt-oss")):
        model, _ = load_backbone(name)
        out[name] = model.config._attn_implementation
    return out


if __name__ == "__main__":
    main()
