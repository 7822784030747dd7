"""Prompts: the trainable prompt parameters, task ids -> soft prompt embeddings ``[B, l, d]``.

How a prompt enters the backbone (injection, shared prefix, fused loss) is ``metaprompt.forward``.
"""

from metaprompt.prompts.decomposed import DecomposedPrompt
from metaprompt.prompts.soft_prompt import PromptInit, SoftPrompt

__all__ = ["DecomposedPrompt", "PromptInit", "SoftPrompt"]
