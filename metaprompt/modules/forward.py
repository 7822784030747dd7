"""Backbone calls with a prompt in front: target-only logits for training, greedy generation for eval.

Vocabulary logits are computed only where a target token is predicted: the decoder's hidden states are
gathered at those positions ``[N, d]`` before the LM head, so a 128k-vocabulary model (LLaMA 3) never
materialises ``[B, l + T, V]`` logits for prompt and input positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metaprompt.data.collate import IGNORE_INDEX
from metaprompt.prompts.inject import prepend_prompt


@dataclass
class ForwardOut:
    """What a prompted forward returns.

    Attributes:
        target_logits: ``[N, V]`` logits at the N positions that predict a target token.
        target_labels: ``[N]`` the tokens they predict.
        loss: Mean cross-entropy over the N target tokens (fp32).
        hidden_states: Selected layers' hidden states ``[B, l + T, d]`` (empty unless requested).
        token_mask: ``[B, l + T]`` 1 on real input/target tokens (prompt and padding excluded).
    """

    target_logits: torch.Tensor
    target_labels: torch.Tensor
    loss: torch.Tensor
    hidden_states: list[torch.Tensor]
    token_mask: torch.Tensor


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body (returns hidden states) and the LM head of an HF causal LM (also PEFT-wrapped)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings()


def prompted_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    prompt: torch.Tensor | None,
    hidden_layers: tuple[int, ...] = (),
) -> ForwardOut:
    """Run the backbone on ``[prompt, input]`` and score the target tokens only.

    Args:
        model: HF causal LM (frozen).
        input_ids: ``[B, T]`` right-padded prompt+target tokens.
        attention_mask: ``[B, T]``.
        labels: ``[B, T]`` target tokens, IGNORE_INDEX elsewhere.
        prompt: ``[B, l, d]`` soft prompts (backbone dtype), or None (e.g. LoRA).
        hidden_layers: Indices into the decoder's ``hidden_states`` tuple to return (``-1`` = last).
    """
    decoder, head = decoder_and_head(model)
    inputs = prepend_prompt(model.get_input_embeddings(), input_ids, attention_mask, prompt)
    out = decoder(**inputs.as_kwargs(), use_cache=False, output_hidden_states=bool(hidden_layers))
    n_prompt = 0 if prompt is None else prompt.shape[1]
    full_labels = F.pad(labels, (n_prompt, 0), value=IGNORE_INDEX)
    # position j predicts token j+1
    next_labels = full_labels[:, 1:]
    select = next_labels != IGNORE_INDEX
    hidden = out.last_hidden_state[:, :-1][select]
    logits = head(hidden)
    target_labels = next_labels[select]
    loss = F.cross_entropy(logits.float(), target_labels)
    token_mask = F.pad(attention_mask, (n_prompt, 0), value=0)
    hidden_states = [out.hidden_states[i] for i in hidden_layers] if hidden_layers else []
    return ForwardOut(logits, target_labels, loss, hidden_states, token_mask)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    prompt: torch.Tensor | None,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    synced_gpus: bool = False,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch with soft prompts in front.

    Returns:
        Per row, the generated token ids up to (not including) the first end-of-sequence token.
    """
    inputs = prepend_prompt(model.get_input_embeddings(), prompt_input_ids, prompt_attention_mask, prompt)
    out = model.generate(
        inputs_embeds=inputs.inputs_embeds,
        attention_mask=inputs.attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        synced_gpus=synced_gpus,
    )
    rows = []
    for seq in out.tolist():
        rows.append(seq[: seq.index(eos_token_id)] if eos_token_id in seq else seq)
    return rows
