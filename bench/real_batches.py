"""p1 on real batches: a teacher prompt-tuning step, ours vs PEFT PromptTuning, on batches drawn by the
teacher stage's own sampler from the 21 clinical sources (``lightning_configs/teacher.yaml``: batch 8,
temperature 2, max_length 512, one task per batch) and, for comparison, by the mixed sampler
(``tasks_per_batch: null``: most batches hold 6-8 tasks), at prompt lengths 10 and 100.

    python -m bench.real_batches [--smoke]

The same batches go to both sides; each side's time is the sum over ``real_batches`` steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from itertools import islice

from bench import cases
from bench.common import FULL, SMOKE, Settings, interleaved_medians
from metaprompt.data import MultitaskDataModule


def draw(s: Settings, tasks: str, cache: str, tasks_per_batch: int | None) -> list[dict]:
    """The first ``real_batches`` training batches of the teacher stage's sampler."""
    dm = MultitaskDataModule(
        tasks=tasks, backbone=s.backbone, max_length=s.real_max_length, min_prompt_tokens=32,
        batch_size=s.batch_size, temperature=2.0,
        seed=s.seed, cache_dir=cache, max_eval_per_task=1, tasks_per_batch=tasks_per_batch,
    )  # fmt: skip
    dm.setup("fit")
    return list(islice(dm.train_dataloader(), s.real_batches))


def in_turn(fns: list):
    """One callable running ``fns`` one after the other (a step per batch)."""
    return lambda: [fn() for fn in fns]


def run(s: Settings, tasks: str, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="metaprompt-bench-real-") as scratch:
        drawn = {"grouped": draw(s, tasks, scratch, 1), "mixed": draw(s, tasks, scratch, None)}
    n_tasks = len({t for b in drawn["mixed"] for t in b["task_ids"].tolist()}) or 1
    out: dict = {"tasks": tasks, "batches": s.real_batches}
    out["distinct_tasks_per_batch"] = {k: [len(set(b["task_ids"].tolist())) for b in bs] for k, bs in drawn.items()}
    out["tokens_per_batch"] = {k: [int(b["attention_mask"].sum()) for b in bs] for k, bs in drawn.items()}
    for length in s.real_prompt_lengths:
        log(f"p1 on real batches: prompt length {length}")
        ls = Settings(**{**s.as_dict(), "prompt_length": length})
        ours = cases.prompt_tuning(ls, n_tasks=max(n_tasks, 21))
        peft = cases.peft_prompt_tuning(ls)
        fns = {}
        for kind, batches in drawn.items():
            fns[f"ours_{kind}"] = in_turn([cases.our_step(ours, b) for b in batches])
            fns[f"peft_{kind}"] = in_turn([cases.peft_step(peft, b) for b in batches])
        times = interleaved_medians(fns, s.real_warmup, s.real_repeats)
        out[str(length)] = {
            "seconds": times,
            "grouped_vs_peft": times["peft_grouped"] / times["ours_grouped"],
            "mixed_vs_peft": times["peft_mixed"] / times["ours_mixed"],
        }
        del ours, peft, fns
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    print(json.dumps(run(s, "gad,rqe,kqa_nli" if args.smoke else "clinical21"), indent=2))


if __name__ == "__main__":
    main()
