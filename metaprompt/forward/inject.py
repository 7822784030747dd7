"""Prepend soft prompts to a causal LM's input embeddings, for training and batched generation.

The prompt goes right before a row's first real token. With right padding (training) the layout is
``[prompt, tokens, pads]``; with left padding (generation) it is ``[pads, prompt, tokens]``. Pads are
masked out and ``position_ids = cumsum(mask) - 1`` skips them, so every row sees exactly
``[prompt, tokens]`` at positions ``0 .. l+n-1`` — the same logits as the unpadded row. Pads must not
sit *between* prompt and text (peft#1093): positions would shift, and sliding-window layers (gpt-oss)
measure their window in key indices, so pads inside the window would push the prompt out of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptedInputs:
    """Backbone inputs with the prompt in front.

    Attributes:
        inputs_embeds: ``[B, l + T, d]``.
        attention_mask: ``[B, l + T]``, 1 on the prompt and real tokens.
        position_ids: ``[B, l + T]``, contiguous over unmasked positions.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` 0/1 mask -> position ids counting only unmasked tokens (masked ones get 0)."""
    pos = mask.long().cumsum(-1) - 1
    return pos.clamp(min=0) * mask.long()


def prepend_prompt(
    embed_tokens: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt: torch.Tensor
) -> PromptedInputs:
    """Embed ``input_ids`` and put ``prompt`` in front of every row.

    Args:
        embed_tokens: The backbone's input embedding module.
        input_ids: ``[B, T]`` token ids (left or right padded).
        attention_mask: ``[B, T]`` 1 on real tokens.
        prompt: ``[B, l, d]`` per-row prompts (already in the backbone's dtype), or ``None`` for none.

    Returns:
        :class:`PromptedInputs` of length ``l + T``.
    """
    embeds = embed_tokens(input_ids)
    if prompt is None:
        return PromptedInputs(embeds, attention_mask, positions_from_mask(attention_mask))
    if prompt.shape[0] != input_ids.shape[0] or prompt.shape[-1] != embeds.shape[-1]:
        raise ValueError(f"prompt {tuple(prompt.shape)} does not fit inputs {tuple(embeds.shape)}")
    n_prompt = prompt.shape[1]
    embeds = torch.cat([prompt.to(embeds.dtype), embeds], dim=1)  # [prompt, pads?, tokens, pads?]
    mask = torch.cat([attention_mask.new_ones(prompt.shape[:2]), attention_mask], dim=1)
    lead = (attention_mask.long().cumsum(-1) == 0).sum(-1)  # [B] left pads per row (0 when right-padded)
    if bool(lead.any()):  # move each row's left pads in front of its prompt: [pads, prompt, tokens]
        j = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        lead = lead.unsqueeze(1)
        src = torch.where(j < lead, j + n_prompt, torch.where(j < lead + n_prompt, j - lead, j))
        embeds = embeds.gather(1, src.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
        mask = mask.gather(1, src)
    return PromptedInputs(embeds, mask, positions_from_mask(mask))
