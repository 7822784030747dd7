"""Where a training step's time goes: torch.profiler over our step and our no-grad forward (same batch).

    python -m bench.profile                 # SmolLM2-135M, 128 tokens, the default fast paths
    python -m bench.profile --smoke --fast '{"shared_prefix": false}'
    python -m bench.profile --decode        # greedy decoding steps at the eval batch (p8's gap to the bound)

Prints the top operators by self CPU time for each, and their totals (the p2 ratio's numerator and
denominator, decomposed). Not part of ``make bench``: a tool for finding the next fast path.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile

from bench import cases
from bench.common import FULL, SMOKE


def profiled(fn, warmup: int = 1) -> torch.profiler.profile:
    for _ in range(warmup):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--fast", default=None, help="FastPaths switches as JSON (default: the defaults)")
    parser.add_argument("--rows", type=int, default=25, help="operators shown per table")
    parser.add_argument("--decode", action="store_true", help="profile greedy decoding instead of a step")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    torch.manual_seed(s.seed)
    module = cases.prompt_tuning(s, fast=json.loads(args.fast) if args.fast else None)
    batch = cases.train_batch(s, s.tokens)
    fns = (("step", cases.our_step(module, batch)), ("forward", cases.our_forward(module, batch)))
    if args.decode:  # prefill + 1 token vs prefill + decode_tokens: the difference is the decoding steps
        gen = cases.generation_batch(s, 1)
        module.eval()
        fns = tuple(
            (
                f"generate {n} token(s), {gen['prompt_input_ids'].shape[0]} rows",
                cases.our_generation(module, gen, s, n=n),
            )
            for n in (1, s.decode_tokens)
        )
    for name, fn in fns:
        prof = profiled(fn)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        print(f"== {name}: {total:.2f} s self CPU time (all threads' wall time of ops, summed per op)")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
