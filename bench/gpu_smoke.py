"""GPU smoke benchmark of the scale-out path: every stage at the 8B/20B shapes, against PEFT prompt tuning.

    bash bench/gpu_smoke.sh        # exits 0 with "skipped: no CUDA" on a machine without a GPU

Parts (``gpu_smoke.sh`` runs them in this order; results are merged into ``bench/gpu_results.json``):

* ``prepare``: random-init bf16 weight folders of the preset shapes (stored architectures, fewer
  layers for the sharded part) + SmolLM2's tokenizer, so nothing is downloaded and the real
  ``from_pretrained`` path (into ZeRO-3 partitions) is what loads them.
* ``zero3`` (under ``torchrun``, all GPUs): Lightning's real ``DeepSpeedStrategy(stage=3)``, bf16, on the
  LLaMA-3.1-8B and gpt-oss-20b shapes with ``--layers`` decoder layers: teacher -> distillation ->
  target -> LoRA, and PEFT prompt tuning on the same batches.
* ``single``: the full-depth LLaMA-3.1-8B shape on one GPU, bf16, activation checkpointing: teacher,
  LoRA and PEFT prompt tuning.

Per stage: tokens/s (real tokens of all ranks, after warm-up steps) and peak GPU memory (max over
ranks; while loading, and during the timed steps). Batches are random token ids (values do not matter
for speed or memory); validation is off. ``--dry-run`` runs the ``single`` part on CPU with the tiny
backbones to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from metaprompt.scale import full_adapter, full_numel, outside_zero_init, zero3_hf_config, zero_stage

RESULTS = Path(__file__).resolve().parent / "gpu_results.json"
CACHE = Path(os.environ.get("METAPROMPT_BENCH_CACHE", "/tmp/metaprompt_gpu_smoke"))
TASKS = ["task_a", "task_b"]
STAGES = ("teacher", "distill", "target", "lora", "peft_prompt_tuning")


def shape_name(preset: str, layers: int | None) -> str:
    return f"{preset}@{layers}" if layers else preset


def prepare(preset: str, layers: int | None, device: str) -> Path:
    """A random-init bf16 HF folder of ``preset``'s architecture (``layers`` decoder layers), built once."""
    from transformers import AutoModelForCausalLM

    from metaprompt.backbones import architecture_config, load_tokenizer

    folder = CACHE / shape_name(preset, layers)
    if (folder / "DONE").is_file():
        return folder
    config = architecture_config(preset, **({"num_hidden_layers": layers} if layers else {}))
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    load_tokenizer("tiny-llama").save_pretrained(folder)  # SmolLM2's 49k ids fit every vocabulary
    (folder / "DONE").write_text("ok\n")
    return folder


def batches(steps: int, batch_size: int, tokens: int, target: int, seed: int = 0) -> list[dict]:
    """Right-padded training batches of random ids: the last ``target`` tokens of each row are targets."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        ids = torch.randint(3, 49152, (batch_size, tokens), generator=g)
        labels = ids.clone()
        labels[:, :-target] = -100
        task_ids = torch.randint(0, len(TASKS), (batch_size,), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "task_ids": task_ids})
    return out


class PeftPromptTuning(L.LightningModule):
    """PEFT's own prompt tuning in a LightningModule, loaded the same way (ZeRO-3-aware) as our stages."""

    def __init__(self, backbone: str, dtype: str, prompt_length: int, learning_rate: float, checkpointing: bool):
        super().__init__()
        self.backbone, self.dtype_name, self.prompt_length = backbone, dtype, prompt_length
        self.learning_rate, self.checkpointing = learning_rate, checkpointing
        self.model = None
        self._hf_deepspeed_config = None

    def configure_model(self) -> None:
        from peft import PromptTuningConfig, get_peft_model

        from metaprompt.backbones import load_backbone

        if self.model is not None:
            return
        strategy = self._trainer.strategy if self._trainer is not None else None
        if zero_stage(strategy) == 3:
            self._hf_deepspeed_config = zero3_hf_config(strategy)  # keep alive while loading
        model, _ = load_backbone(self.backbone, self.dtype_name)
        if self.checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        with outside_zero_init():
            self.model = get_peft_model(
                model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=self.prompt_length)
            )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.learning_rate)


def stage_module(stage: str, backbone: str, dtype: str, upstream: dict, checkpointing: bool, prompt_length: int):
    from metaprompt.modules import LoRA, MultitaskDistillation, TargetAdaptation, TeacherPromptTuning

    kw = dict(
        backbone=backbone, dtype=dtype, task_names=TASKS, prompt_length=prompt_length, evaluation={"generate": False}
    )
    fast = {"fast_paths": {"activation_checkpointing": checkpointing}}
    if stage == "teacher":
        return TeacherPromptTuning(optim={"lr": 0.3}, **fast, **kw)
    if stage == "distill":
        return MultitaskDistillation(teacher_adapter=upstream["teacher"], optim={"lr": 0.3}, **fast, **kw)
    if stage == "target":
        return TargetAdaptation(metaprompt_adapter=upstream["distill"], optim={"lr": 0.01}, **kw)
    if stage == "lora":
        return LoRA(r=8, dropout=0.0, **{**kw, "prompt_length": 0})
    if stage == "peft_prompt_tuning":
        return PeftPromptTuning(backbone, dtype, prompt_length, 0.3, checkpointing)
    raise ValueError(f"unknown stage {stage!r}")


class Meter(L.Callback):
    """Tokens/s over the steps after ``warmup`` (all ranks), peak GPU memory while loading and stepping."""

    def __init__(self, warmup: int):
        self.warmup, self.tokens, self.t0, self.load_peak, self.result = warmup, 0, None, 0.0, {}

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self._sync()
            if torch.cuda.is_available():
                self.load_peak = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
            self.t0 = time.perf_counter()
        if batch_idx >= self.warmup:
            self.tokens += int(batch["attention_mask"].sum())

    def on_train_end(self, trainer, pl_module):
        self._sync()
        seconds = time.perf_counter() - self.t0
        step_peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        device = trainer.strategy.root_device
        rate = trainer.strategy.reduce(torch.tensor(self.tokens / seconds, device=device), reduce_op="sum")
        peaks = torch.tensor([self.load_peak, step_peak], device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)
        self.result = {
            "tokens_per_s": round(float(rate), 1),
            "peak_gib_loading": round(float(peaks[0]), 2),
            "peak_gib_steps": round(float(peaks[1]), 2),
            "trainable_params": sum(full_numel(p) for p in pl_module.parameters() if p.requires_grad),
            "seconds_timed": round(seconds, 2),
        }


def run_stages(args, folder: Path, strategy_factory, devices, precision, checkpointing, stages) -> dict:
    """Fit each stage for ``warmup + steps`` steps on the same batches; export adapters for the next stage."""
    data = batches(args.warmup + args.steps, args.batch_size, args.tokens, args.target_tokens)
    dtype = "float32" if args.dry_run else "bfloat16"
    results, upstream = {}, {}
    for stage in stages:
        module = stage_module(stage, str(folder), dtype, upstream, checkpointing, args.prompt_length)
        meter = Meter(args.warmup)
        trainer = L.Trainer(
            accelerator="cpu" if args.dry_run else "gpu",
            devices=devices,
            strategy=strategy_factory(),
            precision=precision,
            max_steps=args.warmup + args.steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[meter],
        )
        trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
        results[stage] = meter.result
        if hasattr(module, "export_adapter"):
            upstream[stage] = str(CACHE / "adapters" / folder.name / stage)
            with full_adapter(module):  # collective under ZeRO-3: every rank gathers, rank 0 writes
                if trainer.is_global_zero:
                    module.export_adapter(upstream[stage])
            trainer.strategy.barrier()
        if trainer.is_global_zero:
            print(f"[gpu_smoke] {folder.name} {stage}: {meter.result}", flush=True)
        del module, trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def write_results(part: str, results: dict) -> None:
    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged[part] = results
    merged["machine"] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry run)",
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["prepare", "zero3", "single"])
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the sharded shapes")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per GPU")
    parser.add_argument("--tokens", type=int, default=512, help="input + target tokens per row")
    parser.add_argument("--target-tokens", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="single part on CPU with the tiny backbones")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run:
        print(f"gpu_smoke {args.part}: skipped: no CUDA")
        return 0
    if args.dry_run:  # check the script on CPU: tiny shapes, fp32, tiny batches
        global CACHE, RESULTS
        CACHE, RESULTS = CACHE / "dry-run", CACHE / "dry-run" / "gpu_results.json"
        args.batch_size, args.tokens, args.target_tokens, args.prompt_length = 2, 32, 8, 4
        folder = prepare_tiny("tiny-llama")
        write_results("single", {folder.name: run_stages(args, folder, lambda: "auto", 1, "32-true", True, STAGES)})
        return 0
    if args.part == "prepare":
        for preset, layers in (("llama-3.1-8b", args.layers), ("gpt-oss-20b", args.layers), ("llama-3.1-8b", None)):
            print(f"[gpu_smoke] weights: {prepare(preset, layers, 'cuda')}", flush=True)
        return 0
    if args.part == "zero3":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        world = int(os.environ.get("WORLD_SIZE", "1"))
        results = {}
        for preset in ("llama-3.1-8b", "gpt-oss-20b"):
            folder = CACHE / shape_name(preset, args.layers)
            factory = lambda: DeepSpeedStrategy(stage=3, exclude_frozen_parameters=True)  # noqa: E731
            results[folder.name] = run_stages(args, folder, factory, world, "bf16-mixed", False, STAGES)
        if int(os.environ.get("RANK", "0")) == 0:
            write_results("zero3", {"world_size": world, "layers": args.layers, **results})
        return 0
    folder = CACHE / "llama-3.1-8b"  # part == "single": full depth, one GPU, activation checkpointing
    stages = ("teacher", "lora", "peft_prompt_tuning")
    write_results("single", {folder.name: run_stages(args, folder, lambda: "auto", 1, "bf16-mixed", True, stages)})
    return 0


def prepare_tiny(preset: str) -> Path:
    from metaprompt.backbones import load_backbone

    folder = CACHE / preset
    if not (folder / "DONE").is_file():
        model, tokenizer = load_backbone(preset)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "DONE").write_text("ok\n")
    return folder


if __name__ == "__main__":
    sys.exit(main())
