"""Prompts: task ids -> soft prompt embeddings ``[B, l, d]``, and their injection into a causal LM."""

from metaprompt.prompts.decomposed import DecomposedPrompt
from metaprompt.prompts.inject import PromptedInputs, prepend_prompt
from metaprompt.prompts.soft_prompt import PromptInit, SoftPrompt

__all__ = ["DecomposedPrompt", "PromptInit", "PromptedInputs", "SoftPrompt", "prepend_prompt"]
