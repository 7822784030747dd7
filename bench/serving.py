"""Mixed-task serving throughput: one file of 10 tasks' rows interleaved vs the same rows grouped by task.

    python -m bench.serving                      # SmolLM2-135M, the CPU reproduction's metaprompt (results/cpu)
    python -m bench.serving --smoke              # tiny backbone, a 2-step distillation made on the fly

Target (issue 15): mixed throughput >= 0.9x grouped. Both orders are timed round-robin in one process on the
same Predictor (medians of ``--repeats``), and so is the mixed file without the read-ahead window that batches
rows by output budget (``window = batch_size``: each batch takes the next rows as they come), to show what the
window buys; writes ``bench/serving.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from metaprompt.serving import Predictor, request_of


def requests(predictor: Predictor, tasks: list[str], per_task: int, root: str | None) -> list[dict]:
    """``per_task`` validation records of each task as requests, interleaved round-robin over tasks."""
    from metaprompt.tasks.taskset import resolve_tasks

    by_task = {}
    for spec in resolve_tasks(",".join(tasks), root):
        recs = spec.load(root)["validation"][:per_task]
        by_task[spec.name] = [request_of(r, spec.name) for r in recs]
    return [by_task[t][i] for i in range(per_task) for t in tasks if i < len(by_task[t])]


def smoke_adapter(folder: Path, root: str | None) -> Path:
    from metaprompt.pipeline import Pipeline, PipelineConfig, Stage

    config = PipelineConfig(
        output_dir=str(folder), backbone="tiny-llama", prompt_length=2, accelerator="cpu",
        sources="gad,kqa_nli,medquad,rqe,pubmedqa,mediqa_qs,head_qa,clinifact,bc5cdr_chem,ncbi_disease",
        data={"max_length": 96, "min_prompt_tokens": 16, "batch_size": 2, "max_eval_per_task": 2, **({"root": root} if root else {})},
        teacher=Stage(1), distill=Stage(1),
    )  # fmt: skip
    pipe = Pipeline(config)
    for run in pipe.runs_for_sources():
        pipe.execute(run)
    return folder / "distill" / "adapter"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--adapter", default="results/cpu/distill/adapter")
    parser.add_argument(
        "--tasks", default="gad,kqa_nli,medquad,meqsum,evidence_inference,bc5cdr_chem,bc5cdr_disease,bionlp09,cdr,pgr"
    )
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", default="bench/serving.json")
    args = parser.parse_args(argv)
    scratch = tempfile.TemporaryDirectory()
    tasks = args.tasks.split(",")
    if args.smoke:
        adapter = smoke_adapter(Path(scratch.name), args.root)
        tasks = [
            "gad",
            "kqa_nli",
            "medquad",
            "rqe",
            "pubmedqa",
            "mediqa_qs",
            "head_qa",
            "clinifact",
            "bc5cdr_chem",
            "ncbi_disease",
        ]
        args.per_task, args.repeats = 2, 2
    else:
        adapter = Path(args.adapter)
    predictor = Predictor(adapter, root=args.root, batch_size=args.batch_size, max_length=256,
                          max_new_tokens={"ner": 48, "re": 48, "qa": 96, "nli": 8, "summarization": 64})  # fmt: skip
    if unknown := sorted(set(tasks) - set(predictor.names)):
        raise SystemExit(f"bench.serving: the adapter does not serve {unknown}; it serves {predictor.names}")
    mixed = requests(predictor, tasks, args.per_task, args.root)
    grouped = sorted(mixed, key=lambda r: tasks.index(r["task"]))
    times: dict[str, list[float]] = {"mixed": [], "grouped": [], "mixed_no_window": []}
    predictor.predict(mixed[: args.batch_size])  # warm-up
    window = predictor.window
    for _ in range(args.repeats):
        for name, rows in (("mixed", mixed), ("grouped", grouped), ("mixed_no_window", mixed)):
            predictor.window = args.batch_size if name == "mixed_no_window" else window
            start = time.perf_counter()
            outs = predictor.predict(rows)
            times[name].append(time.perf_counter() - start)
            assert not any("error" in o for o in outs), [o for o in outs if "error" in o][:3]
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["grouped"] / median["mixed"]  # throughput(mixed) / throughput(grouped), same rows
    result = {
        "backbone": "tiny-llama" if args.smoke else "smollm2-135m", "adapter": str(adapter), "tasks": tasks,
        "rows": len(mixed), "batch_size": args.batch_size, "window": window, "seconds": times,
        "median_seconds": median, "rows_per_second": {k: len(mixed) / v for k, v in median.items()},
        "mixed_over_grouped_throughput": round(ratio, 3),
        "mixed_no_window_over_grouped_throughput": round(median["grouped"] / median["mixed_no_window"], 3),
        "target": 0.9, "met": ratio >= 0.9,
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    keys = (
        "rows",
        "rows_per_second",
        "mixed_over_grouped_throughput",
        "mixed_no_window_over_grouped_throughput",
        "met",
    )
    print(json.dumps({k: result[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
