"""Teacher cache for distillation: the teachers' outputs on every training row, computed once.

The teachers are frozen, so their top-k log-probabilities on target tokens (at the distillation
temperature) and their hidden states at the compared layers never change during distillation. They
are computed in one no-grad pass over the training split and stored memory-mapped under the run
folder; a distillation step then runs only the student and reads its rows' slices (KBs per row).

Layout of ``<folder>/``::

    meta.json             fingerprint (teacher prompts, backbone, T, k, layers), sizes; written last
    index.json            row key -> [token offset, target tokens, position offset, real tokens]
    topk_logprobs.f32     [N_tokens, k] float32 teacher log-probabilities at temperature T
    topk_indices.i32      [N_tokens, k] int32 vocabulary ids
    hidden_<j>.bin        [N_positions, d] hidden states of layer j at real (non-prompt, non-pad) tokens,
                          in the backbone's dtype (bf16 stored as its raw 16 bits)

A row's key hashes its task id, prompt length and tokens, so lookups need no dataset index and do not
depend on the sampler. With k = V the KL equals the online teacher's (``losses.topk_kl``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metaprompt.data.collate import IGNORE_INDEX
from metaprompt.progress import bar

FORMAT = 1
_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}


def _raw(states: torch.Tensor) -> np.ndarray:
    """Hidden states as numpy (bf16 as its raw 16 bits: numpy has no bfloat16)."""
    return (states.view(torch.uint16) if states.dtype is torch.bfloat16 else states).numpy()


def row_key(task_id: int, prompt_ids: Iterable[int], target_ids: Iterable[int]) -> str:
    """Content key of one training row (task, prompt tokens, target tokens)."""
    prompt, target = list(prompt_ids), list(target_ids)
    data = np.asarray([task_id, len(prompt), *prompt, *target], dtype=np.int64)
    return hashlib.sha1(data.tobytes()).hexdigest()


def batch_keys(batch: dict) -> list[str]:
    """Keys of the rows of a right-padded training batch (``input_ids``, ``attention_mask``, ``labels``)."""
    keys = []
    lengths = batch["attention_mask"].sum(1).tolist()
    n_targets = (batch["labels"] != IGNORE_INDEX).sum(1).tolist()
    for ids, task, n, t in zip(batch["input_ids"].tolist(), batch["task_ids"].tolist(), lengths, n_targets):
        keys.append(row_key(task, ids[: n - t], ids[n - t : n]))
    return keys


@dataclass
class CachedTeacher:
    """A batch's teacher outputs read from the cache.

    Attributes:
        topk_logprobs: ``[N, k]`` fp32, rows in the order of the student's ``target_logits``.
        topk_indices: ``[N, k]`` int64.
        hidden_states: Per cached layer ``[B, l + T, d]``, zero outside the student's ``token_mask``.
    """

    topk_logprobs: torch.Tensor
    topk_indices: torch.Tensor
    hidden_states: list[torch.Tensor]


class TeacherCache:
    """Read side of a cache folder (see module docstring). Build one with :func:`build_teacher_cache`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.index: dict[str, list[int]] = json.loads((self.folder / "index.json").read_text())
        k, n_tok, n_pos, d = self.meta["k"], self.meta["tokens"], self.meta["positions"], self.meta["hidden_size"]
        self.logprobs = np.memmap(self.folder / "topk_logprobs.f32", np.float32, "r", shape=(n_tok, k))
        self.indices = np.memmap(self.folder / "topk_indices.i32", np.int32, "r", shape=(n_tok, k))
        self.dtype = getattr(torch, self.meta["dtype"])
        self.hidden = [
            np.memmap(self.folder / f"hidden_{j}.bin", _NUMPY[self.dtype], "r", shape=(n_pos, d))
            for j in range(len(self.meta["hidden_layers"]))
        ]

    @staticmethod
    def fingerprint(teacher_prompts: torch.Tensor, **settings) -> str:
        """Hash of the teacher prompts and the settings the cache depends on (backbone, T, k, layers)."""
        h = hashlib.sha256(teacher_prompts.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps({"format": FORMAT, **settings}, sort_keys=True, default=str).encode())
        return h.hexdigest()

    @classmethod
    def open_if_valid(cls, folder: str | Path, fingerprint: str) -> TeacherCache | None:
        """The cache in ``folder`` if it is complete and was built for ``fingerprint``, else None."""
        meta = Path(folder) / "meta.json"
        if not meta.is_file() or json.loads(meta.read_text()).get("fingerprint") != fingerprint:
            return None
        return cls(folder)

    @staticmethod
    def _tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array))  # a copy: the memmap is read-only

    def _hidden(self, array: np.ndarray) -> torch.Tensor:
        t = self._tensor(array)
        return t.view(torch.bfloat16) if self.dtype is torch.bfloat16 else t

    def lookup(self, batch: dict, token_mask: torch.Tensor, like: list[torch.Tensor]) -> CachedTeacher:
        """The cached teacher outputs of a batch's rows.

        Args:
            batch: The training batch (right-padded).
            token_mask: ``[B, l + T]`` the student's mask of real tokens (where hidden states are compared).
            like: The student's hidden states ``[B, l + T, d]`` (shape, device, dtype of the result).
        """
        entries = []
        for key in batch_keys(batch):
            if key not in self.index:
                raise KeyError(
                    f"teacher cache {self.folder}: no entry for a training row (task data or encoding changed "
                    "since it was built?); delete the folder to rebuild it"
                )
            entries.append(self.index[key])
        device = batch["input_ids"].device
        logprobs = torch.cat([self._tensor(self.logprobs[t : t + n]) for t, n, _, _ in entries]).to(device)
        indices = torch.cat([self._tensor(self.indices[t : t + n]) for t, n, _, _ in entries]).to(device).long()
        hidden = []
        for j, student in enumerate(like[: len(self.hidden)]):
            rows = torch.cat([self._hidden(self.hidden[j][p : p + m]) for _, _, p, m in entries])
            full = torch.zeros_like(student)
            full[token_mask.bool()] = rows.to(device=student.device, dtype=student.dtype)
            hidden.append(full)
        return CachedTeacher(logprobs, indices, hidden)


def cached_distillation_loss(loss_fn, student, cached: CachedTeacher) -> dict[str, torch.Tensor]:
    """MPT's ``ce + λ (w_kl · τ² KL + β · MSE)`` with the teacher read from the cache.

    Args:
        loss_fn: The stage's :class:`~metaprompt.losses.DistillationLoss` (its λ, τ, β, w_kl).
        student: The student's :class:`~metaprompt.forward.prompted.ForwardOut`.
        cached: From :meth:`TeacherCache.lookup`.
    """
    return loss_fn(
        student.loss,
        student.target_logits,
        None,
        student.hidden_states,
        cached.hidden_states,
        student.token_mask,
        teacher_topk=(cached.topk_logprobs, cached.topk_indices),
        target_weights=student.target_weights,
        token_weights=student.token_weights,
    )


def build_teacher_cache(
    folder: str | Path,
    rows: list[dict],
    collate: Callable[[list[dict]], dict],
    teacher: Callable[[dict], object],
    *,
    fingerprint: str,
    k: int,
    temperature: float,
    hidden_layers: tuple[int, ...],
    hidden_size: int,
    dtype: torch.dtype,
    batch_size: int = 8,
    max_target_tokens: int | None = None,
) -> TeacherCache:
    """Run the teacher once over ``rows`` and write the cache (see module docstring).

    Args:
        folder: Cache folder (created; its files are replaced).
        rows: Encoded training rows (``task_id``, ``prompt_ids``, ``target_ids``).
        collate: Right-padding training collator.
        teacher: ``batch -> ForwardOut`` of the teacher (no grad), with ``hidden_layers`` if any.
        fingerprint: From :meth:`TeacherCache.fingerprint`; a cache is reused only if it matches.
        k: Top-k entries kept per target token (``k = V``: exact).
        temperature: Distillation temperature τ (the log-probabilities are of ``softmax(z / τ)``).
        hidden_layers: Indices of the hidden states stored (empty: none).
        hidden_size: d.
        dtype: The backbone's dtype (hidden states are stored in it, so the cached MSE is exact).
        batch_size: Rows per teacher forward (rows are sorted by length to cut padding).
        max_target_tokens: The training collator's cut of each row's target (the data module's
            ``max_train_target_tokens``): rows are cached, and keyed, as training batches hold them.
    """
    if max_target_tokens is not None:
        rows = [{**r, "target_ids": list(r["target_ids"])[:max_target_tokens]} for r in rows]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete until the end
    index: dict[str, list[int]] = {}
    unique = []
    n_tok = n_pos = 0
    for row in rows:
        key = row_key(int(row["task_id"]), row["prompt_ids"], row["target_ids"])
        if key not in index:
            n_t, n_p = len(row["target_ids"]), len(row["prompt_ids"]) + len(row["target_ids"])
            index[key] = [n_tok, n_t, n_pos, n_p]
            n_tok, n_pos = n_tok + n_t, n_pos + n_p
            unique.append(row)
    logprobs = np.memmap(folder / "topk_logprobs.f32", np.float32, "w+", shape=(max(n_tok, 1), k))
    indices = np.memmap(folder / "topk_indices.i32", np.int32, "w+", shape=(max(n_tok, 1), k))
    hidden = [
        np.memmap(folder / f"hidden_{j}.bin", _NUMPY[dtype], "w+", shape=(max(n_pos, 1), hidden_size))
        for j in range(len(hidden_layers))
    ]
    unique.sort(key=lambda r: len(r["prompt_ids"]) + len(r["target_ids"]))
    with torch.no_grad():
        for start in bar(range(0, len(unique), batch_size), desc="teacher cache", unit="batch"):
            chunk = unique[start : start + batch_size]
            out = teacher(collate(chunk))
            top = F.log_softmax(out.target_logits.float() / temperature, dim=-1).topk(k, dim=-1)
            values, ids = top.values.cpu().numpy(), top.indices.to(torch.int32).cpu().numpy()
            keep = out.token_mask.bool()
            states = [_raw(h[keep].to(dtype).cpu()) for h in out.hidden_states]
            t_row = p_row = 0
            for row in chunk:
                t0, n_t, p0, n_p = index[row_key(int(row["task_id"]), row["prompt_ids"], row["target_ids"])]
                logprobs[t0 : t0 + n_t] = values[t_row : t_row + n_t]
                indices[t0 : t0 + n_t] = ids[t_row : t_row + n_t]
                for j, state in enumerate(states):
                    hidden[j][p0 : p0 + n_p] = state[p_row : p_row + n_p]
                t_row, p_row = t_row + n_t, p_row + n_p
            if t_row != values.shape[0] or p_row != keep.sum():
                raise RuntimeError(
                    f"teacher cache: the teacher scored {values.shape[0]} target tokens and {int(keep.sum())} "
                    f"positions for rows holding {t_row} and {p_row}"
                )
    for array in (logprobs, indices, *hidden):
        array.flush()
    (folder / "index.json").write_text(json.dumps(index))
    meta = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "k": k,
        "temperature": temperature,
        "hidden_layers": list(hidden_layers),
        "hidden_size": hidden_size,
        "dtype": str(dtype).removeprefix("torch."),
        "tokens": max(n_tok, 1),
        "positions": max(n_pos, 1),
        "rows": len(index),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return TeacherCache(folder)
