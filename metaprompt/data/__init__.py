"""Data: tokenisation, task sampling and collation on top of metaprompt.tasks."""

from metaprompt.data.collate import IGNORE_INDEX, CausalLMCollator
from metaprompt.data.datamodule import MultitaskDataModule
from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.sampling import TemperatureSampler, task_probabilities

__all__ = [
    "IGNORE_INDEX",
    "CausalLMCollator",
    "MultitaskDataModule",
    "PromptEncoder",
    "TemperatureSampler",
    "task_probabilities",
]
