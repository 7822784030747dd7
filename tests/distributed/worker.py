"""One rank of a 2-process CPU run of every stage under one strategy (launched by test_strategies.py).

    MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=r LOCAL_RANK=r \
        python tests/distributed/worker.py --strategy zero3 --out DIR --data-root ../shared/data \
        --backbone llama=/tmp/tiny-llama --plan llama:teacher,distill,target,lora --plan oss:teacher ...

Per (backbone, stage): fit ``STEPS`` steps with generation-based validation (the two ranks' rows are of
task types with different token budgets, so they generate different lengths), save a checkpoint, fit
``EXTRA`` more steps resumed from it in a fresh module/trainer (``--resume``), save again, export the
adapter live (gathered on all ranks) and consolidate the last checkpoint on rank 0. Every rank writes
the batches it trained on, so the test can replay them in one process and compare adapters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from stages import EXTRA, STEPS, data_module, stage_module

import metaprompt.modules.base as base_module
from metaprompt.consolidation import consolidate
from metaprompt.scale import FSDP2Strategy, full_adapter, release_process_group, zero_stage
from metaprompt.scale.zero import is_zero3_param

TIMEOUT = timedelta(seconds=60)  # collectives fail instead of hanging forever
GENERATIONS: list[dict] = []


def make_strategy(kind: str):
    from lightning.pytorch.strategies import DDPStrategy

    if kind == "ddp":
        return DDPStrategy(process_group_backend="gloo", timeout=TIMEOUT)
    if kind == "fsdp2":
        return FSDP2Strategy(timeout=TIMEOUT)
    if kind in ("zero2", "zero3"):
        from cpu_deepspeed import CPUDeepSpeedStrategy

        strategy = CPUDeepSpeedStrategy(
            stage=int(kind[-1]), process_group_backend="gloo", exclude_frozen_parameters=True, timeout=TIMEOUT
        )
        # partition every parameter, however small, so the tiny model exercises the gathers
        strategy.config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
        return strategy
    raise ValueError(f"unknown strategy {kind!r}")


class Recorder(L.Callback):
    """Per rank: the batches trained on, the step training (re)started at, and how params are sharded."""

    def __init__(self):
        self.batches: list[dict] = []
        self.start_step: int | None = None
        self.layout: dict = {}

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step
        emb = pl_module.backbone.get_input_embeddings().weight
        adapter = [p for _, p in pl_module.trainable_parameters()]
        layer_weight = next(  # q_proj [64, 64] of the first layer (LoRA: its frozen base layer)
            p
            for n, p in pl_module.backbone.named_parameters()
            if ".layers.0.self_attn.q_proj." in n and n.endswith("weight") and not p.requires_grad
        )
        self.layout = {
            "embedding_local_numel": emb.numel(),
            "embedding_partitioned": is_zero3_param(emb),
            "adapter_partitioned": all(is_zero3_param(p) for p in adapter),
            "layer_param_type": type(layer_weight).__name__,
            "layer_local_numel": (
                layer_weight.to_local() if hasattr(layer_weight, "to_local") else layer_weight
            ).numel(),
            "adapter_types": sorted({type(p).__name__ for p in adapter}),
        }

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append({k: v.detach().cpu().clone() for k, v in batch.items() if torch.is_tensor(v)})


def _record_generate(*args, **kwargs):
    out = _generate(*args, **kwargs)
    GENERATIONS.append({"budget": args[4], "lengths": [len(r) for r in out], "synced_gpus": kwargs["synced_gpus"]})
    return out


_generate, base_module.generate = base_module.generate, _record_generate


def trainer_for(kind: str, max_steps: int, recorder: Recorder, validate: bool) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=2,
        num_nodes=1,
        strategy=make_strategy(kind),
        precision="32-true",
        max_steps=max_steps,
        limit_val_batches=1 if validate else 0,
        limit_test_batches=1,
        val_check_interval=max_steps if validate else None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )


def checkpoint_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_stage(args, stage: str, backbone: str, folder: Path, dm, upstream: dict[str, str]) -> dict:
    rank, t0 = int(os.environ["RANK"]), time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "first.ckpt"
    zero_shot = None
    if stage == "target":  # `metaprompt test` before any fit: the strategy's inference set-up, synced decoding
        module = stage_module(stage, backbone, dm.task_names, upstream)
        GENERATIONS.clear()
        trainer_for(args.strategy, 0, Recorder(), validate=False).test(module, datamodule=dm)
        zero_shot = {"scores": sorted(module.last_test_scores), "generations": list(GENERATIONS)}
    recorder = Recorder()
    module = stage_module(stage, backbone, dm.task_names, upstream)
    trainer = trainer_for(args.strategy, STEPS, recorder, validate=True)
    GENERATIONS.clear()
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(ckpt)
    layout, generations = recorder.layout, list(GENERATIONS)
    last, steps = ckpt, STEPS
    if args.resume:
        module = stage_module(stage, backbone, dm.task_names, upstream)
        last, steps = folder / "last.ckpt", STEPS + EXTRA
        first_batches = recorder.batches
        recorder = Recorder()
        trainer = trainer_for(args.strategy, steps, recorder, validate=False)
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt))
        trainer.save_checkpoint(last)
        recorder.batches = first_batches + recorder.batches
    with full_adapter(module):  # collective: every rank gathers, rank 0 writes
        if trainer.is_global_zero:
            module.export_adapter(str(folder / "adapter_live"))
    torch.save(recorder.batches, folder / f"batches_rank{rank}.pt")
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        consolidate(last, folder / "adapter_consolidated")
    report = {
        "rank": rank,
        "zero_stage": zero_stage(trainer.strategy),
        "layout": layout,
        "generations": generations,
        "zero_shot_test": zero_shot,
        "resumed_at": recorder.start_step if args.resume else None,
        "global_step": trainer.global_step,
        "steps": steps,
        "checkpoint_bytes": checkpoint_bytes(last),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    reports: list = [None, None]
    dist.all_gather_object(reports, report)
    if trainer.is_global_zero:
        (folder / "report.json").write_text(json.dumps(reports, indent=1))
        print(f"[worker] {args.strategy} {stage} on {Path(backbone).name}: {report['seconds']} s", flush=True)
    trainer.strategy.barrier()
    return {"adapter": str(folder / "adapter_live")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", required=True, choices=["ddp", "fsdp2", "zero2", "zero3"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--backbone", action="append", default=[], help="NAME=FOLDER")
    parser.add_argument("--plan", action="append", default=[], help="NAME:stage,stage,... (in order)")
    parser.add_argument("--resume", action="store_true", help="save, then resume for EXTRA steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # two ranks share two cores
    backbones = dict(b.split("=", 1) for b in args.backbone)
    dm = data_module(args.data_root, args.cache_dir)
    for item in args.plan:
        name, stages = item.split(":", 1)
        upstream: dict[str, str] = {}
        for stage in stages.split(","):
            out = run_stage(args, stage, backbones[name], Path(args.out) / name / stage, dm, upstream)
            upstream[stage] = out["adapter"]
    # Join gloo's threads while Python is alive: left to the interpreter's shutdown, one of them can free the
    # last all_gather_object's tensors too late and abort this rank after a successful run (issue 10; see
    # metaprompt.scale.release_process_group). Enough under DDP, as for a user's `metaprompt fit`.
    release_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    # FSDP2's modules and DeepSpeed's engine/groups still hold their process groups, so their gloo threads
    # survive release_process_group: skip the interpreter shutdown they can crash (everything is written).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
