"""Stages (one LightningModule each, on the shared ``PromptModule`` base) and baselines."""

from metaprompt.modules.backbone_only import BackboneOnly
from metaprompt.modules.base import PromptModule
from metaprompt.modules.distill import MultitaskDistillation
from metaprompt.modules.grow import MetapromptGrowth
from metaprompt.modules.lora import LoRA
from metaprompt.modules.target import TargetAdaptation
from metaprompt.modules.teacher import PromptTuning, TeacherPromptTuning

__all__ = [
    "BackboneOnly",
    "LoRA",
    "MetapromptGrowth",
    "MultitaskDistillation",
    "PromptModule",
    "PromptTuning",
    "TargetAdaptation",
    "TeacherPromptTuning",
]
