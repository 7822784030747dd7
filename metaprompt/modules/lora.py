"""Baseline — ``LoRA`` (Hu et al., 2022) via PEFT, in the same data/evaluation harness as the prompts.

r = 8 on q_proj and v_proj by default: 3,407,872 parameters (0.042%) on LLaMA-3.1-8B.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.modules.base import PromptModule, reject_prompt_length
from metaprompt.optim import OptimArgs

LORA_OPTIM = OptimArgs(lr=2e-4, weight_decay=0.0)


class LoRA(PromptModule):
    """Low-rank adapters on attention projections; no soft prompt.

    Args:
        r: LoRA rank.
        alpha: LoRA scaling numerator (scale = alpha / r).
        dropout: LoRA dropout.
        target_modules: Module names to adapt.
        optim: As in :class:`PromptModule`; the rate defaults to 2e-4 here (a common LoRA rate for 7-8B causal
            LMs), weight decay to 0.
        **kwargs: See :class:`PromptModule`.
    """

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.05,
        target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
        optim: OptimArgs = LORA_OPTIM,
        **kwargs,
    ):
        reject_prompt_length(kwargs, "LoRA")
        super().__init__(optim=OptimArgs.of(optim, **LORA_OPTIM.to_dict()), **kwargs)
        self.save_hyperparameters()

    def build_adapter(self) -> None:
        config = LoraConfig(
            r=self.hparams.r,
            lora_alpha=self.hparams.alpha,
            lora_dropout=self.hparams.dropout,
            target_modules=list(self.hparams.target_modules),
            task_type="CAUSAL_LM",
        )
        # PEFT draws lora_A from the global RNG: seed it, so every rank (and a rerun) builds the same
        # adapter — FSDP2 and ZeRO-3 shard each rank's own copy without broadcasting it first.
        with torch.random.fork_rng():
            torch.manual_seed(self.hparams.seed)
            self.backbone = get_peft_model(self.backbone, config)

    def prompt_for(self, task_ids: torch.Tensor) -> None:
        return None

    def export_adapter(self, folder: str) -> None:
        """PEFT's own format (``adapter_model.safetensors``) plus our ``adapter.json``/``adapter.safetensors``."""
        self.backbone.save_pretrained(folder)
        tensors = {n: p.detach() for n, p in self.backbone.named_parameters() if p.requires_grad}
        config = AdapterConfig(
            kind="lora",
            backbone=self.hparams.backbone,
            hidden_size=self.hidden_size,
            prompt_length=0,
            rank=self.hparams.r,
            task_names=list(self.task_names),
            extra={"alpha": self.hparams.alpha, "target_modules": list(self.hparams.target_modules)},
        )
        save_adapter(folder, tensors, config)
