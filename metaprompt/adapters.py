"""Portable adapter files: one folder per adapter, ``adapter.safetensors`` + ``adapter.json``.

Every stage leaves its trainable tensors in a folder that can be checked before use and loaded
without pickle::

    save_adapter("runs/demo/distill", {"shared_prompt": p, "task_cols": u, "task_rows": v}, config)
    tensors, config = load_adapter("runs/demo/distill", expect_kind="metaprompt", hidden_size=576)

``adapter.json`` (indented, sorted keys) holds the :class:`AdapterConfig`; the same JSON is also stored
in the safetensors header (metadata key ``metaprompt_config``), so a tensor file that lost its JSON
still says what it is, and a JSON/tensor pair from two different saves is detected on load.

Tensor keys per ``kind`` (K = ``len(task_names)``, l = ``prompt_length``, d = ``hidden_size``, r = ``rank``):

* ``teacher``, ``prompt_tuning``: ``prompts`` [K, l, d], one row per task in ``task_names`` order; rank 0.
* ``metaprompt``: ``shared_prompt`` [l, d] (MPT's P*), ``task_cols`` [K, l, r] (U_k) and ``task_rows``
  [K, d, r] (V_k), so that ``prompt_k = shared_prompt * (task_cols[k] @ task_rows[k].T)``.
* ``target``: the same keys with K = number of targets. ``shared_prompt`` may be omitted when only the
  factors were trained; ``extra["metaprompt_adapter"]`` then names the metaprompt adapter it builds on.
* ``lora``: PEFT's own LoRA keys, unchecked here.

:func:`export_peft_mpt` writes P*, U, V as a PEFT ``MultitaskPromptTuning`` adapter instead.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from metaprompt import __version__
from metaprompt.errors import AdapterError, AdapterNotFoundError

__all__ = [
    "ADAPTER_KINDS",
    "FORMAT_VERSION",
    "AdapterConfig",
    "check_tensors",
    "export_peft_mpt",
    "load_adapter",
    "save_adapter",
]

ADAPTER_KINDS = ("teacher", "metaprompt", "target", "prompt_tuning", "lora")
FORMAT_VERSION = 1
CONFIG_FILE, TENSOR_FILE = "adapter.json", "adapter.safetensors"
_METADATA_KEY = "metaprompt_config"
_PROMPT_KINDS = {"teacher", "prompt_tuning"}
_FACTOR_KINDS = {"metaprompt", "target"}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class AdapterConfig:
    """What an adapter file holds and what it fits onto.

    Attributes:
        kind: One of ``ADAPTER_KINDS``.
        backbone: Name or path of the backbone the adapter was trained on.
        hidden_size: The backbone's embedding width d.
        prompt_length: Number of prompt positions l (0 for ``lora``).
        rank: Rank r of the task factors (``metaprompt``/``target``), LoRA's r, else 0.
        task_names: Tasks in row order of the tensors (empty allowed only for ``lora``).
        format_version: File-format version; this code reads and writes ``FORMAT_VERSION``.
        extra: JSON-serialisable extras (LoRA settings, the metaprompt adapter a target builds on).
        metaprompt_version: Version of the package that wrote the file.
    """

    kind: str
    backbone: str
    hidden_size: int
    prompt_length: int = 0
    rank: int = 0
    task_names: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    metaprompt_version: str = __version__

    def __post_init__(self) -> None:
        if isinstance(self.task_names, tuple):  # YAML/CLI callers may hand a tuple; JSON gives a list
            self.task_names = list(self.task_names)
        if self.kind not in ADAPTER_KINDS:
            raise ValueError(f"kind must be one of {ADAPTER_KINDS}, got {self.kind!r}")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"backbone must be a non-empty name or path, got {self.backbone!r}")
        if not _positive_int(self.hidden_size):
            raise ValueError(f"hidden_size must be an int > 0, got {self.hidden_size!r}")
        if self.kind == "lora":
            if self.prompt_length != 0:
                raise ValueError(f"prompt_length must be 0 for kind 'lora', got {self.prompt_length!r}")
        elif not _positive_int(self.prompt_length):
            raise ValueError(f"prompt_length must be an int > 0 for kind {self.kind!r}, got {self.prompt_length!r}")
        if self.kind in _FACTOR_KINDS and not _positive_int(self.rank):
            raise ValueError(f"rank must be an int > 0 for kind {self.kind!r}, got {self.rank!r}")
        if self.kind in _PROMPT_KINDS and self.rank != 0:
            raise ValueError(f"rank must be 0 for kind {self.kind!r} (no task factors), got {self.rank!r}")
        if self.kind == "lora" and not (isinstance(self.rank, int) and self.rank >= 0):
            raise ValueError(f"rank must be an int >= 0 for kind 'lora', got {self.rank!r}")
        names = self.task_names
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"task_names must be a list of non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"task_names must be unique, got duplicates in {names!r}")
        if not names and self.kind != "lora":
            raise ValueError(f"task_names must name at least one task for kind {self.kind!r}")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version!r} is not supported (this code reads {FORMAT_VERSION})"
            )
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a dict, got {type(self.extra).__name__}")
        try:
            json.dumps(self.extra)
        except TypeError as error:
            raise ValueError(f"extra must be JSON-serialisable: {error}") from None
        if not isinstance(self.metaprompt_version, str):
            raise ValueError(f"metaprompt_version must be a string, got {self.metaprompt_version!r}")

    def to_json(self) -> str:
        """The config as indented JSON with sorted keys (the text of ``adapter.json``)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        """Build a config from parsed JSON, naming unknown or missing keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} (expected some of {sorted(known)})")
        missing = sorted({"kind", "backbone", "hidden_size"} - set(data))
        if missing:
            raise ValueError(f"missing keys {missing}")
        return cls(**data)


def check_tensors(tensors: dict[str, torch.Tensor], config: AdapterConfig) -> None:
    """Raise ``ValueError`` naming the key when ``tensors`` do not fit ``config`` (see the module docstring)
    or hold a NaN/inf (a diverged run: such an adapter is never written, nor loaded)."""
    k, length, d, r = len(config.task_names), config.prompt_length, config.hidden_size, config.rank
    bad = sorted(key for key, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all())
    if bad:
        counts = ", ".join(
            f"{key} ({int((~torch.isfinite(tensors[key])).sum())} of {tensors[key].numel()})" for key in bad
        )
        raise ValueError(f"non-finite values (NaN/inf) in {counts}: the run that made them diverged")
    if config.kind == "lora":
        if not tensors:
            raise ValueError("a lora adapter needs at least one tensor")
        return
    if config.kind in _PROMPT_KINDS:
        expected = {"prompts": (k, length, d)}
    else:
        expected = {"shared_prompt": (length, d), "task_cols": (k, length, r), "task_rows": (k, d, r)}
        if config.kind == "target" and "shared_prompt" not in tensors:
            del expected["shared_prompt"]
            if not config.extra.get("metaprompt_adapter"):
                raise ValueError(
                    "target adapter without shared_prompt: extra['metaprompt_adapter'] must name the "
                    "metaprompt adapter it builds on"
                )
    unexpected = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    if missing or unexpected:
        raise ValueError(
            f"kind {config.kind!r} expects keys {sorted(expected)}; missing {missing}, unexpected {unexpected}"
        )
    for key, shape in expected.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{key} has shape {list(tensor.shape)} but the config says {list(shape)} "
                f"(tasks={k}, prompt_length={length}, hidden_size={d}, rank={r})"
            )
        if not tensor.is_floating_point():
            raise ValueError(f"{key} must be a floating-point tensor, got {tensor.dtype}")


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write via ``write(tmp_path)`` to a temp file beside ``path``, fsync, then ``os.replace`` it in."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    cpu = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def save_adapter(folder: str | os.PathLike, tensors: dict[str, torch.Tensor], config: AdapterConfig) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` to ``folder`` (created if needed), atomically.

    Args:
        folder: Output folder.
        tensors: Tensors keyed as the module docstring lists for ``config.kind``; checked against ``config``.
        config: What the adapter is.

    Returns:
        The folder as a ``Path``.
    """
    folder = Path(folder)
    try:
        check_tensors(tensors, config)
    except ValueError as error:
        raise AdapterError(f"{folder}: refusing to save the adapter: {error}") from None
    folder.mkdir(parents=True, exist_ok=True)
    text = config.to_json()
    # Tensors first, JSON last: load cross-checks the two, so an interrupted overwrite is detected.
    _write_tensors(folder / TENSOR_FILE, tensors, {_METADATA_KEY: text, "format": "pt"})
    _write_text(folder / CONFIG_FILE, text)
    return folder


def _read_config(path: Path) -> AdapterConfig:
    if not path.is_file():
        raise AdapterNotFoundError(f"{path}: not found (expected a folder written by save_adapter)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AdapterError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise AdapterError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise AdapterError(
            f"{path}: unknown format_version {version!r} (this metaprompt {__version__} reads {FORMAT_VERSION})"
        )
    try:
        return AdapterConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise AdapterError(f"{path}: {error}") from None


def load_adapter(
    folder: str | os.PathLike,
    expect_kind: str | None = None,
    backbone: str | None = None,
    hidden_size: int | None = None,
) -> tuple[dict[str, torch.Tensor], AdapterConfig]:
    """Read and check an adapter folder written by :func:`save_adapter` (no pickle involved).

    Args:
        folder: The adapter folder.
        expect_kind: When given, the config's ``kind`` must equal it.
        backbone: The backbone it is being loaded onto; a different name only warns (a compatible fine-tune).
        hidden_size: The backbone's embedding width; a different value is an error.

    Returns:
        ``(tensors, config)``: CPU tensors keyed as the module docstring lists, and the config.

    Raises:
        FileNotFoundError: ``adapter.json`` or ``adapter.safetensors`` is missing.
        ValueError: Unknown format version, wrong kind, size mismatch, or tensors that do not fit the config.
    """
    folder = Path(folder)
    config = _read_config(folder / CONFIG_FILE)
    if expect_kind is not None and config.kind != expect_kind:
        raise AdapterError(f"{folder / CONFIG_FILE}: kind {config.kind!r} but expected {expect_kind!r}")
    if hidden_size is not None and config.hidden_size != hidden_size:
        raise AdapterError(
            f"{folder / CONFIG_FILE}: hidden_size {config.hidden_size} but the backbone has {hidden_size}"
        )
    if backbone is not None and config.backbone != backbone:
        warnings.warn(
            f"{CONFIG_FILE}: adapter trained on backbone {config.backbone!r}, loading onto {backbone!r}",
            stacklevel=2,
        )
    tensor_path = folder / TENSOR_FILE
    if not tensor_path.is_file():
        raise AdapterNotFoundError(f"{tensor_path}: not found (the folder has {CONFIG_FILE} but no tensors)")
    try:
        with safe_open(tensor_path, framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    except (SafetensorError, OSError) as error:
        raise AdapterError(f"{tensor_path}: not a readable safetensors file ({error})") from None
    stored = metadata.get(_METADATA_KEY)
    if stored is not None and stored != config.to_json():
        raise AdapterError(
            f"{tensor_path}: its embedded config differs from {CONFIG_FILE} (files from two saves? "
            "an interrupted overwrite?)"
        )
    try:
        check_tensors(tensors, config)
    except ValueError as error:
        raise AdapterError(f"{tensor_path}: {error}") from None
    return tensors, config


def export_peft_mpt(
    folder: str | os.PathLike,
    shared_prompt: torch.Tensor,
    task_cols: torch.Tensor,
    task_rows: torch.Tensor,
    base_model_name: str,
    task_type: str = "CAUSAL_LM",
) -> Path:
    """Write P*, U, V as a PEFT ``MultitaskPromptTuning`` adapter that ``PeftModel.from_pretrained`` loads.

    PEFT 0.21 stores ``prompt_embeddings`` [l, d] (loaded into ``prompt_encoder.embedding.weight``),
    ``prefix_task_cols`` [K, l, r] and ``prefix_task_rows`` [K, r, d]: the rows are our ``task_rows``
    transposed. Its forward is ``embedding * (cols[k] @ rows[k])``, the same prompt as ours.

    Args:
        folder: Output folder (``adapter_model.safetensors`` + ``adapter_config.json``).
        shared_prompt: ``[l, d]`` P*.
        task_cols: ``[K, l, r]`` U.
        task_rows: ``[K, d, r]`` V.
        base_model_name: Recorded as ``base_model_name_or_path``.
        task_type: PEFT task type.

    Returns:
        The folder as a ``Path``.
    """
    from peft import MultitaskPromptTuningConfig

    if shared_prompt.dim() != 2 or task_cols.dim() != 3 or task_rows.dim() != 3:
        raise ValueError("shared_prompt must be [l, d], task_cols [K, l, r] and task_rows [K, d, r]")
    length, d = shared_prompt.shape
    k, r = task_cols.shape[0], task_cols.shape[2]
    if tuple(task_cols.shape) != (k, length, r) or tuple(task_rows.shape) != (k, d, r):
        raise ValueError(
            f"task_cols {list(task_cols.shape)} and task_rows {list(task_rows.shape)} do not fit shared_prompt "
            f"{list(shared_prompt.shape)}: expected [K, {length}, r] and [K, {d}, r]"
        )
    config = MultitaskPromptTuningConfig(
        task_type=task_type,
        num_virtual_tokens=length,
        token_dim=d,
        num_tasks=k,
        num_ranks=r,
        num_transformer_submodules=1,
        prompt_tuning_init="RANDOM",
        base_model_name_or_path=base_model_name,
        inference_mode=True,
    )
    tensors = {
        "prompt_embeddings": shared_prompt,
        "prefix_task_cols": task_cols,
        "prefix_task_rows": task_rows.transpose(1, 2),
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_tensors(folder / "adapter_model.safetensors", tensors, {"format": "pt"})
    _write_text(folder / "adapter_config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    return folder
