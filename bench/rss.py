"""Peak memory of one training step, measured alone in a fresh interpreter (``bench.run`` calls this).

    python -m bench.rss ours|ours_checkpointing|peft [--smoke]

Prints one JSON line: resident memory after loading and the peak over the steps (MB).
"""

from __future__ import annotations

import argparse
import json

import torch

from bench import cases
from bench.common import FULL, SMOKE, rss_mb

CASES = ("ours", "ours_checkpointing", "peft")


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
    else:
        fast = {"activation_checkpointing": True} if args.case == "ours_checkpointing" else None
        step = cases.our_step(cases.prompt_tuning(s, fast=fast), batch)
    loaded = rss_mb()
    for _ in range(s.rss_steps):
        step()
    print(json.dumps({"case": args.case, "rss_after_load_mb": loaded["rss_mb"], **rss_mb()}))


if __name__ == "__main__":
    main()
