"""Markdown tables from a bench results file (the README's "Performance" section is a copy of this).

python -m bench.report bench/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WHAT = {  # key: what the ratio compares
    "p1_train_vs_peft": "PEFT PromptTuning step / our teacher step (input + target tokens of the bench)",
    "p1_real_batches_vs_peft": "as p1 on real batches of the teacher stage's sampler (clinical21, one task per batch), l 100",
    "p1_real_batches_vs_peft_short_prompt": "the same, l 10",
    "p1_real_mixed_vs_peft": "as p1 on real mixed batches (6-8 tasks per batch), l 100",
    "p1_real_mixed_vs_peft_short_prompt": "the same, l 10",
    "p2_step_over_forward": "our step / our no-grad forward of the same batch",
    "p3_distill_over_pt": "distillation step (teacher cache) / prompt-tuning step",
    "p3_online_teacher_over_pt": "distillation step (online teacher) / prompt-tuning step",
    "p4_mixed_over_single": "tokens/s, batch of 10 tasks / batch of 1 task",
    "p4_mixed_vs_peft_lora": "tokens/s, ours (10 tasks) / PEFT LoRA `adapter_names` (10 adapters)",
    "p4_cold_mixed_over_single": "as p4, prefix memo off (every prompt recomputed per batch)",
    "p4_cold_mixed_vs_peft_lora": "as p4 vs LoRA, prefix memo off",
    "p5_target_bytes": "bytes of one target adapter, LLaMA-3.1-8B shape (l 100, r 1, bf16)",
    "p7_ranked_over_generate": "examples/s, ranked scoring / greedy generation of the same label answers (rqe)",
    "p8_decode_vs_peft_prompt_tuning": "tokens/s at the eval batch, ours / PEFT PromptTuning `generate` (l 100)",
    "p8_decode_vs_hf_generate": "tokens/s, ours / HF `generate` on the [prompt, row] embeddings (KV cache)",
    "p8_decode_fraction_of_bound": "our decode-step tokens/s / (batch x measured bandwidth / weight bytes)",
    "p8_drop_finished_speedup": "real end tokens: finished rows kept (HF's way) / dropped, seconds",
    "p9_second_start_over_first": "`metaprompt fit` to its first step (clinical21), warm / cold token cache",
    "p9_test_second_start_over_first": "`metaprompt test` to its first evaluated batch, warm / cold",
    "eval_metaprompt_over_backbone": "seconds to evaluate the same examples, same decoding budget",
}
TARGETS = {  # key: (comparison, goal) — goals of the issue, not test assertions
    "p1_train_vs_peft": (">=", 2.0),
    "p1_real_batches_vs_peft": (">=", 2.0),
    "p2_step_over_forward": ("<=", 2.0),
    "p3_distill_over_pt": ("<=", 1.2),
    "p4_mixed_over_single": (">=", 0.9),
    "p4_mixed_vs_peft_lora": (">=", 1.0),
    "p5_target_bytes": ("<=", 10 * 1024),
    "p7_ranked_over_generate": (">=", 5.0),
    "p8_decode_vs_peft_prompt_tuning": (">=", 2.0),
    "p8_decode_fraction_of_bound": (">=", 0.5),
    "p9_second_start_over_first": ("<=", 0.5),
    "eval_metaprompt_over_backbone": ("<=", 1.2),
}


def met(key: str, value: float) -> bool | None:
    """Whether ``value`` meets the goal of ``key`` (None: no goal)."""
    if key not in TARGETS:
        return None
    op, goal = TARGETS[key]
    return bool(value >= goal if op == ">=" else value <= goal)


def _value(key: str, value: float) -> str:
    return f"{value:,.0f}" if key.startswith("p5") else f"{value:.2f}"


def _table(head: str, align: str, rows: list[str]) -> str:
    """A markdown table: the ``head`` row, the ``align`` separator row (e.g. ``"|---|---:|"``), ``rows``."""
    return "\n".join([head, align, *rows])


def ratios_table(results: dict) -> str:
    rows = []
    for key, value in results["summary"].items():
        if isinstance(value, dict):
            continue
        goal = TARGETS.get(key)
        ok = met(key, value)
        mark = "" if ok is None else ("yes" if ok else "**no**")
        target = f"{goal[0]} {goal[1]:g}" if goal else ""
        what = WHAT.get(key, f"as p1, {key.rsplit('_', 1)[-1]} tokens" if key.startswith("p1_train") else "")
        rows.append(f"| `{key}` | {_value(key, value)} | {target} | {mark} | {what} |")
    return _table("| metric | value | target | met | what it compares |", "|---|---:|---|---|---|", rows)


def times_tables(results: dict) -> list[str]:
    s = results["settings"]
    train = results["timings_s"]["training"]
    short, long = train[str(s["tokens"])], train[str(s["long_tokens"])]
    distill = results["timings_s"]["distillation"]
    ablations = train["ablations_step_s"]
    ms = lambda t: f"{t * 1000:,.0f}"  # noqa: E731
    steps = [
        f"| training, {s['tokens']} tokens | {ms(short['ours_step'])} | {ms(short['peft_step'])} |",
        f"| training, {s['long_tokens']} tokens | {ms(long['ours_step'])} | {ms(long['peft_step'])} |",
        f"| no-grad forward, {s['tokens']} tokens | {ms(short['ours_forward'])} | |",
        f"| distillation, teacher cache | {ms(distill['distill_cached_step'])} | |",
        f"| distillation, online teacher | {ms(distill['distill_online_step'])} | |",
    ]
    return [
        _table("| step (median, ms) | ours | PEFT |", "|---|---:|---:|", steps),
        _table(
            f"| ablation ({s['tokens']} tokens, one switch from the defaults, timed round-robin with them) "
            "| step ms | / defaults |",
            "|---|---:|---:|",
            [f"| {name} | {ms(t)} | {t / ablations['defaults']:.2f} |" for name, t in ablations.items()],
        ),
    ]


def other_tables(results: dict) -> list[str]:
    gen, rss, sizes, pad = results["generation"], results["memory"], results["sizes"], results["padding_fraction"]
    llama, smol = sizes["target_adapter"]["llama-3.1-8b"], sizes["target_adapter"]["smollm2-135m"]
    lora = sizes["lora_r8_qv"]
    return [
        _table(
            "| generation (greedy, tokens/s) | value |",
            "|---|---:|",
            [f"| {key.removesuffix('_tokens_per_s')} | {value:,.1f} |" for key, value in gen.items()],
        ),
        _table(
            "| peak RSS of a training step (fresh process) | MB | after load, MB |",
            "|---|---:|---:|",
            [f"| {case} | {r['peak_rss_mb']:,.0f} | {r['rss_after_load_mb']:,.0f} |" for case, r in rss.items()],
        ),
        _table(
            "| adapter bytes (bf16) | LLaMA-3.1-8B | SmolLM2-135M |",
            "|---|---:|---:|",
            [
                f"| target adapter (U, V; l 100, r 1) tensors / file | {llama['tensor_bytes']:,}"
                f" / {llama['safetensors_bytes']:,} | {smol['tensor_bytes']:,} / {smol['safetensors_bytes']:,} |",
                f"| LoRA r 8 on q, v | {lora['llama-3.1-8b']['bytes']:,} | {lora['smollm2-135m']['bytes']:,} |",
            ],
        ),
        f"Padding fraction of training batches ({pad['source']}): {pad['plain']:.1%} plain, "
        f"{pad['bucketed']:.1%} with `length_bucketing`.",
        *eval_tables(results),
    ]


def eval_tables(results: dict) -> list[str]:
    """Evaluation cost per system, decoding throughput, start-up (``bench.eval_speed``, ``bench.startup``)."""
    ev, start = results.get("eval_speed"), results.get("startup")
    if not ev:
        return []
    cost, dec = ev["eval_cost"], ev["decode"]
    p7 = ev["ranked_vs_generated"]
    blocks = [
        _table(
            "| evaluation of the same examples (ranked rqe + generated bioinfer, same budget) | seconds | / backbone |",
            "|---|---:|---:|",
            [f"| {k} | {t:,.1f} | {cost['over_backbone'][k]:.2f} |" for k, t in cost["seconds"].items()],
        ),
        _table(
            "| decoding and scoring | value |",
            "|---|---:|",
            [
                f"| ranked scoring, examples/s ({p7['examples']} rqe examples) | {p7['ranked_examples_per_s']:,.2f} |",
                f"| greedy generation of the same answers ({p7['generated_tokens_mean']:.1f} tokens on average), "
                f"examples/s | {p7['generated_examples_per_s']:,.2f} |",
                f"| the prefill both start with (context through the backbone), examples/s "
                f"| {p7['prefill_examples_per_s']:,.2f} |",
                f"| ours, tokens/s ({dec['rows']} rows x {dec['new_tokens']} tokens, prefill included) "
                f"| {dec['ours_tokens_per_s']:,.1f} |",
                f"| PEFT PromptTuning `generate`, tokens/s | {dec['peft_tokens_per_s']:,.1f} |",
                *(
                    [
                        f"| HF `generate` on the [prompt, row] embeddings, tokens/s | {dec['hf_generate_tokens_per_s']:,.1f} |"
                    ]
                    if "hf_generate_tokens_per_s" in dec
                    else []
                ),
                f"| ours, decode steps only, tokens/s | {dec['ours_decode_step_tokens_per_s']:,.1f} |",
                f"| bound: batch x {dec['memory_bandwidth_gb_s']:.1f} GB/s / {dec['weight_bytes_per_step'] / 1e6:,.0f} MB "
                f"| {dec['bound_tokens_per_s']:,.1f} |",
            ],
        ),
    ]
    if start:
        blocks.append(
            _table(
                f"| start-up ({start['tasks']}, {start['backbone']}) | cold cache, s | warm cache, s | warm / cold |",
                "|---|---:|---:|---:|",
                [
                    f"| `metaprompt {cmd}` | {start[cmd]['first']:.1f} | {start[cmd]['second']:.1f} "
                    f"| {start[cmd]['second_over_first']:.2f} |"
                    for cmd in ("fit", "test")
                ],
            )
        )
    return blocks


def machine_line(results: dict) -> str:
    m = results["machine"]
    cpu = next((line.split(":", 1)[1].strip() for line in m.get("lscpu", []) if line.startswith("Model name")), "?")
    load = m.get("load_average")
    load_text = f", load average at the end {load[0]:.2f}" if load else ""
    return (
        f"Machine: {cpu}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, peft {m['peft']}{load_text}; run took {results['wall_s'] / 60:.1f} min."
    )


def markdown(results: dict) -> str:
    blocks = [ratios_table(results), *times_tables(results), *other_tables(results), machine_line(results)]
    return "\n\n".join(blocks) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="bench/results.json")
    args = parser.parse_args()
    print(markdown(json.loads(Path(args.results).read_text())), end="")


if __name__ == "__main__":
    main()
