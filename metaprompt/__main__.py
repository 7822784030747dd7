"""The ``metaprompt`` command.

metaprompt data stats [--root DIR] [--backbone NAME] [--max-length N]
metaprompt data check my_tasks.yaml [--root DIR]                        (read every record; no training)
metaprompt fit|validate|test|predict -c lightning_configs/<stage>.yaml   (LightningCLI)
metaprompt pipeline -c lightning_configs/demo.yaml                       (the chain + baselines)
metaprompt sweep|ladder -c lightning_configs/ladder.yaml                 (learning rates; the sanity ladder)
metaprompt reproduce -c lightning_configs/reproduce/<preset>.yaml [--time-budget MIN]  (the paper's comparison)
metaprompt reproduce|ladder -c ... --estimate   (hours per stage from bench/results.json; runs nothing)
metaprompt configs                                                       (the shipped configs, by name)
metaprompt grow -c lightning_configs/grow/cpu.yaml                         (add source tasks to a finished metaprompt)
metaprompt analyze RUN/                                                  (task similarity, token readout, target movement)
metaprompt predict --adapter RUN/adapter --input requests.jsonl --output out.jsonl  (mixed-task serving)
metaprompt export --adapter RUN/adapter --task NAME OUT/                 (a task's prompt as a plain PEFT adapter)

``-c`` takes a file, or the name of a shipped config (``lightning_configs/teacher.yaml``, ``teacher``) from
any directory: the configs are package data (metaprompt/configs.py).

Exit status of ``ladder`` and ``reproduce``: 0 complete, 3 stopped by --pipeline.max_minutes /
--time-budget (rerun to continue).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys


def _offline_defaults() -> None:
    # Users with internet can override; by default nothing reaches for a hub at run time.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="metaprompt data", description="Inspect the datasets.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    stats = sub.add_parser("stats", help="table of all datasets: sizes, tokens, truncation, round-trip")
    stats.add_argument(
        "--root", default=None, help="data root holding MANIFEST.yaml (default: $METAPROMPT_DATA or ../shared/data)"
    )
    stats.add_argument("--backbone", default="smollm2-135m", help="tokenizer/chat format to measure with")
    stats.add_argument("--max-length", type=int, default=1024, help="prompt+target token budget")
    check = sub.add_parser("check", help="read every record of a task set (e.g. your own tasks) without training")
    check.add_argument("tasks", help="a task-set YAML, a shipped task set's name, or comma-separated dataset ids")
    check.add_argument(
        "--root", default=None, help="data root for dataset ids (default: $METAPROMPT_DATA or ../shared/data)"
    )
    args = parser.parse_args(argv)
    from metaprompt.data.stats import all_stats, render
    from metaprompt.tasks.errors import DataFormatError

    if args.cmd == "check":
        return data_check(args.tasks, args.root)

    try:
        stats_rows = all_stats(args.root, args.backbone, args.max_length)
    except (FileNotFoundError, DataFormatError) as e:
        print(f"metaprompt data stats: error: {e}", file=sys.stderr)
        return 2
    render(stats_rows)
    return 0 if all(s.manifest_ok and s.roundtrip_ok == s.roundtrip_total for s in stats_rows) else 1


def data_check(tasks: str, root: str | None) -> int:
    """``metaprompt data check TASKS``: every task's records read and checked, one line per task (its counts per
    split, or the first bad record's file, place and problem); exit 0 when all read, 2 otherwise."""
    from metaprompt.tasks.taskset import resolve_tasks

    try:
        specs = resolve_tasks(tasks, root)
    except (OSError, ValueError) as err:  # the declaration itself: a typo key, labels not a list, a missing file
        print(f"metaprompt data check: {err}", file=sys.stderr)
        return 2
    bad = 0
    for spec in specs:
        try:
            splits = spec.load(root)
        except (OSError, ValueError, RuntimeError) as err:  # DataFormatError is a ValueError naming file and place
            print(f"{spec.name}: ERROR {err}", flush=True)
            bad += 1
            continue
        counts = ", ".join(f"{split} {len(records):,}" for split, records in splits.items())
        empty = [split for split, records in splits.items() if not records]
        note = f" (empty: {', '.join(empty)})" if empty else ""
        print(f"{spec.name}: ok ({spec.task_type}; {counts}){note}", flush=True)
    print(f"{len(specs) - bad} of {len(specs)} tasks read without error", flush=True)
    return 2 if bad else 0


def pipeline_main(argv: list[str]) -> int:
    from jsonargparse import ActionConfigFile, ArgumentParser

    from metaprompt.pipeline import Pipeline, PipelineConfig

    parser = ArgumentParser(prog="metaprompt pipeline", description="teacher -> distill -> target -> test, + baselines")
    parser.add_argument(
        "-c", "--config", action=ActionConfigFile, help="pipeline YAML (e.g. lightning_configs/demo.yaml)"
    )
    parser.add_class_arguments(PipelineConfig, "pipeline", as_group=False)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    Pipeline(cfg.pipeline).run()
    return 0


def grow_main(argv: list[str]) -> int:
    from jsonargparse import ActionConfigFile, ArgumentParser

    from metaprompt.grow import GrowConfig, Grower

    parser = ArgumentParser(prog="metaprompt grow", description="add source tasks to a finished distillation")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="grow YAML (lightning_configs/grow/cpu.yaml)")
    parser.add_class_arguments(GrowConfig, "pipeline", as_group=False)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    try:
        Grower(cfg.pipeline).run()
    except FileNotFoundError as err:  # no finished distillation to grow
        print(f"metaprompt grow: {err}", file=sys.stderr)
        return 2
    return 0


def parse_ladder_config(argv: list[str], prog: str = "metaprompt ladder", sweep: bool = False, cls: type | None = None):
    """``-c lightning_configs/ladder.yaml [--pipeline.<field> value ...]`` -> ``(LadderConfig, namespace)``.

    The sweep also takes ``--stages teacher,distill,...`` and ``--metaprompt_adapter DIR``; ``cls`` is the
    config class (``ReproduceConfig`` for ``reproduce``, which also takes ``--time-budget MIN``).
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    from metaprompt.ladder import LadderConfig

    cls = cls or LadderConfig
    parser = ArgumentParser(prog=prog, description=f"{prog} (a {cls.__name__} YAML)")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="ladder / reproduction YAML")
    parser.add_class_arguments(cls, "pipeline", as_group=False)
    if not sweep:
        parser.add_argument(
            "--estimate", action="store_true",
            help="print the cost model's hours per stage (unit costs from bench/results.json) beside what is "
            "already recorded, and exit without running anything",
        )  # fmt: skip
        parser.add_argument(
            "--bench-results", dest="bench_results", type=str | None, default=None,
            help="the unit costs for --estimate: a bench/results.json from `make bench` on this machine and backbone",
        )  # fmt: skip
        parser.add_argument(
            "--gpu", type=str | None, default=None,
            help="--estimate for GPUs of this kind (h100, h200, a100) from their published peaks (a roofline, "
            "metaprompt/roofline.py) instead of the bench's CPU measurements",
        )  # fmt: skip
        parser.add_argument(
            "--gpus", type=int | None, default=None,
            help="GPUs per run for --gpu (default: the preset's strategy devices; `auto`: 8)",
        )  # fmt: skip
    if sweep:
        parser.add_argument("--stages", type=str, default="teacher,distill,target,prompt_tuning,LoRA")
        parser.add_argument("--metaprompt_adapter", type=str | None, default=None)
    if cls is not LadderConfig:
        parser.add_argument(
            "--time-budget", dest="time_budget", type=float | None, default=None,
            help="minutes: start no new run after this (same as --pipeline.max_minutes); rerun to continue",
        )  # fmt: skip
    args = parser.instantiate_classes(parser.parse_args(argv))
    ns = args.pipeline
    config = cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
    if args.get("time_budget") is not None:
        config.max_minutes = args.time_budget
    return config, args


def reproduce_main(argv: list[str]) -> int:
    """``metaprompt reproduce -c PRESET [--time-budget MIN]``: exit 0 complete, 3 stopped (rerun), 2 no preset."""
    from metaprompt.configs import CONFIG_DIR
    from metaprompt.reproduce import ReproduceConfig, Reproduction

    if not any(a in ("-c", "--config") or a.startswith("--config=") for a in argv):
        shipped = sorted(p.stem for p in (CONFIG_DIR / "reproduce").glob("*.yaml"))
        print(f"metaprompt reproduce: give a preset, -c lightning_configs/reproduce/<preset>.yaml (shipped: "
              f"{', '.join(shipped)})", file=sys.stderr)  # fmt: skip
        return 2
    config, args = parse_ladder_config(argv, "metaprompt reproduce", cls=ReproduceConfig)
    try:
        runner = Reproduction(config)
    except ValueError as err:  # a setting no run could use: one line, not a traceback
        print(f"metaprompt reproduce: {err}", file=sys.stderr)
        return 2
    if args.estimate:
        return print_estimate(runner, args.bench_results, args.gpu, args.gpus)
    return 0 if runner.run()["complete"] else 3


def print_estimate(pipeline, bench_results: str | None = None, gpu: str | None = None, gpus: int | None = None) -> int:
    """``--estimate``: the cost model's table for every run of ``pipeline``'s plan (metaprompt/costs.py), from
    the unit costs in ``bench_results`` (default: the committed ``bench/results.json``), or with ``gpu`` from
    that GPU's published peaks (metaprompt/roofline.py) on ``gpus`` devices per run."""
    from metaprompt import costs
    from metaprompt.pipeline import strategy_settings
    from metaprompt.roofline import RooflineCosts, device_count

    try:
        if gpu:
            devices = gpus or device_count(strategy_settings(pipeline.config.strategy).get("devices", 1))
            units = RooflineCosts.for_backbone(pipeline.config.backbone, gpu, devices)
        else:
            units = costs.UnitCosts.from_bench(bench_results or costs.BENCH_RESULTS)
        rows = costs.compare(costs.estimate_plan(pipeline, units), pipeline.out)
    except ValueError as err:  # bench results without a unit cost, or a run that cannot be configured
        print(f"metaprompt: --estimate: {err}", file=sys.stderr)
        return 2
    what = f"Estimated wall time of {pipeline.out}" + (f" on {units.devices} x {gpu}" if gpu else "")
    print(costs.render(rows, what))
    if gpu:
        total = sum(r["estimate_s"] for r in rows) / 3600
        print(f"\n{units.describe()}.\nWall time {total:.1f} h on {units.devices} GPU(s) = "
              f"{total * units.devices:.0f} GPU-hours.")  # fmt: skip
    elif units.backbone != pipeline.config.backbone:  # the unit costs are one machine's, for one backbone
        print(f"\nnote: these unit costs were measured on {units.backbone}, not {pipeline.config.backbone}: give "
              "--bench-results from a bench of that backbone on this machine, or --gpu for a GPU estimate")  # fmt: skip
    return 0


def ladder_main(argv: list[str], sweep: bool = False) -> int:
    from metaprompt.ladder import Ladder

    config, args = parse_ladder_config(argv, f"metaprompt {'sweep' if sweep else 'ladder'}", sweep)
    if sweep:
        from metaprompt.sweep import Sweep

        Sweep(config).run(tuple(s for s in args.stages.split(",") if s), args.metaprompt_adapter)
        return 0
    try:
        runner = Ladder(config)
    except ValueError as err:
        print(f"metaprompt ladder: {err}", file=sys.stderr)
        return 2
    if args.estimate:
        return print_estimate(runner, args.bench_results, args.gpu, args.gpus)
    return 0 if runner.run()["complete"] else 3


def main(argv: list[str] | None = None) -> int:
    from metaprompt.configs import resolve_config_args

    argv = resolve_config_args(list(sys.argv[1:] if argv is None else argv))
    _offline_defaults()
    from metaprompt.progress import quiet_libraries

    quiet_libraries()  # bars only on a terminal (metaprompt.progress)
    if argv[:1] == ["data"]:
        return data_main(argv[1:])
    from metaprompt.errors import InputError
    from metaprompt.tasks.errors import DataFormatError, TaskDeclarationError

    try:
        return _run_command(argv)
    except DataFormatError as err:  # bad data: the one line naming file, place and problem, not a traceback
        print(f"metaprompt {(argv or ['run'])[0]}: data error: {err}", file=sys.stderr)
        return 2
    except TaskDeclarationError as err:  # a typo key, a bad value, an unknown task in a task set
        print(f"metaprompt {(argv or ['run'])[0]}: task declaration error: {err}", file=sys.stderr)
        return 2
    except InputError as err:  # a setting a stage rejects, an adapter that cannot be loaded or saved
        print(f"metaprompt {(argv or ['run'])[0]}: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # a diverged run: one line naming the step and tasks, not a traceback
        print(f"metaprompt {(argv or ['run'])[0]}: {err}", file=sys.stderr)
        return 1


def _run_command(argv: list[str]) -> int:
    from metaprompt.configs import CONFIG_DIR, list_main

    if argv[:1] == ["configs"]:
        return list_main(argv[1:])
    if argv[:1] == ["pipeline"]:
        return pipeline_main(argv[1:])
    if argv[:1] == ["grow"]:
        return grow_main(argv[1:])
    if argv[:1] == ["analyze"]:
        from metaprompt.analysis import analyze_main

        return analyze_main(argv[1:])
    if argv[:1] == ["export"]:
        from metaprompt.export import export_main

        return export_main(argv[1:])
    if argv[:1] == ["reproduce"]:
        return reproduce_main(argv[1:])
    if argv[:1] in (["ladder"], ["sweep"]):
        return ladder_main(argv[1:], sweep=argv[0] == "sweep")
    if argv[:1] == ["demo"]:  # the pipeline on the embedded backbone and a small real-task subset
        return pipeline_main(["-c", str(CONFIG_DIR / "demo.yaml"), *argv[1:]])
    if argv[:1] == ["predict"] and any(a == "--adapter" or a.startswith("--adapter=") for a in argv):
        from metaprompt.serving import predict_main  # serving many tasks of one adapter, not LightningCLI's predict

        return predict_main(argv[1:])
    if argv[:1] and argv[0] in ("fit", "validate", "test", "predict") or argv[:1] in (["--help"], ["-h"]):
        from metaprompt.cli import cli_main

        cli_main(argv)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
