"""Peak memory of one training step, measured alone in a fresh interpreter (``bench.run`` calls this).

    python -m bench.rss ours|ours_checkpointing|peft|distill_long|distill_long_logits [--smoke]

Prints one JSON line: resident memory after loading and the peak over the steps (MB).

``distill_long*``: a distillation step (online teacher) on rows whose targets are long (``long_tokens``
per row, all but 32 of them target: MedQuAD answers reach ~3,200 tokens), with the KL fused through
the frozen head (the default) or from ``[N, V]`` student and teacher logits (``fused_loss`` off).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from bench import cases
from bench.common import FULL, SMOKE, rss_mb
from metaprompt.forward import FastPaths

CASES = ("ours", "ours_checkpointing", "peft", "distill_long", "distill_long_logits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    torch.manual_seed(s.seed)
    batch = cases.train_batch(s, s.tokens)
    if args.case == "peft":
        step = cases.peft_step(cases.peft_prompt_tuning(s), batch)
    elif args.case.startswith("distill_long"):
        long = dataclasses.replace(s, target_tokens=s.long_tokens - 32)
        module = cases.distillation(s, cases.prompt_tuning(s), None)
        fast = FastPaths(fused_loss=args.case == "distill_long")
        step = cases.our_step(module, cases.train_batch(long, long.long_tokens), fast=fast)
    else:
        fast = {"activation_checkpointing": True} if args.case == "ours_checkpointing" else None
        step = cases.our_step(cases.prompt_tuning(s, fast=fast), batch)
    loaded = rss_mb()
    for _ in range(s.rss_steps):
        step()
    print(json.dumps({"case": args.case, "rss_after_load_mb": loaded["rss_mb"], **rss_mb()}))


if __name__ == "__main__":
    main()
