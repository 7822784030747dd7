"""Turn any training checkpoint into the stage's portable adapter (``adapter.safetensors`` + JSON).

Checkpoints hold only the trainable parameters (plus optimizer state), in the strategy's format:

* single device / DDP: one ``.ckpt`` file (``state_dict`` + ``hyper_parameters``);
* DeepSpeed ZeRO-2/3: a directory of per-rank shards (``exclude_frozen_parameters=True``); the fp32
  master weights are merged with DeepSpeed's ``zero_to_fp32`` reader;
* FSDP2 (``ModelParallelStrategy``): a ``torch.distributed.checkpoint`` directory + ``meta.pt``.

:func:`consolidate` reads the adapter state on CPU in one process (no GPU, no process group), rebuilds
the stage's adapter modules on a backbone built on the meta device (no weights are loaded), loads the
state into them and calls the stage's own ``export_adapter``, so the file is exactly the one a
single-device run would write. Nothing is unpickled beyond tensors and plain data (and the few DeepSpeed
classes of :data:`ALLOWED_GLOBALS`): every ``.pt`` file is scanned first and loaded with
``weights_only=True``, a DCP folder's ``.metadata`` is unpickled admitting only DCP's metadata classes,
and the stage class a checkpoint names must be a metaprompt module::

    from metaprompt.consolidation import consolidate
    consolidate("runs/teacher/checkpoints/last.ckpt", "runs/teacher/adapter")

    python -m metaprompt.consolidation runs/teacher/checkpoints/last.ckpt runs/teacher/adapter
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from metaprompt.modules.base import MODULE_KEY

_DEEPSPEED_PREFIX = "_forward_module."


ALLOWED_GLOBALS = {
    "deepspeed.runtime.zero.config.ZeroStageEnum": ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    "deepspeed.runtime.fp16.loss_scaler.LossScaler": ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler": ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    "deepspeed.utils.tensor_fragment.fragment_address": ("deepspeed.utils.tensor_fragment", "fragment_address"),
}
"""Classes beyond tensors and plain data that DeepSpeed's optimizer shards pickle (Lightning's own
checkpoints of these stages need none): the only ones a checkpoint may name to be loaded."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint that would run code or build arbitrary objects when unpickled."""


def check_pickle(path: Path) -> list[str]:
    """The allow-listed globals a torch checkpoint file names (see :data:`ALLOWED_GLOBALS`).

    Raises:
        UnsafeCheckpointError: naming the file and every other global it pickles (``os.system``, a class
            of some other package...), or when the file cannot be scanned (not torch's zip format).
    """
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # legacy (non-zip) files cannot be scanned without unpickling them
        raise UnsafeCheckpointError(f"{path}: cannot check what it unpickles ({err}); refusing to load it") from None
    bad = sorted(set(found) - ALLOWED_GLOBALS.keys())
    if bad:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load: it pickles {', '.join(bad)} (not tensors or plain data), which could run "
            "code; only metaprompt's own Lightning/DeepSpeed checkpoints are consolidated"
        )
    return found


def _torch_load(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with only :data:`ALLOWED_GLOBALS` admitted, after :func:`check_pickle`."""
    allowed = [getattr(importlib.import_module(m), n) for m, n in (ALLOWED_GLOBALS[g] for g in check_pickle(path))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _read_deepspeed(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint, get_model_state_file

    tag = (folder / "latest").read_text().strip() if (folder / "latest").is_file() else "checkpoint"
    for shard in sorted((folder / tag).glob("*.pt")):  # DeepSpeed's reader unpickles them fully: check first
        check_pickle(shard)
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag, exclude_frozen_parameters=True)
    model_file = next((folder / tag).glob("*mp_rank_00_model_states.pt"), None)
    if model_file is None:  # ZeRO-3 names it zero_pp_rank_0_mp_rank_00_model_states.pt, ZeRO-2 mp_rank_00_...
        model_file = Path(get_model_state_file(str(folder / tag), 3))
    meta = _torch_load(model_file)
    state = {k.removeprefix(_DEEPSPEED_PREFIX): v for k, v in state.items()}
    return state, meta


_DCP_GLOBALS = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("collections", "OrderedDict"),
    *(
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        )
    ),  # fmt: skip
}
"""What a ``torch.distributed.checkpoint`` ``.metadata`` pickle may name besides torch dtypes."""


class _DcpMetadataUnpickler(pickle.Unpickler):
    """Unpickles a DCP ``.metadata`` admitting only :data:`_DCP_GLOBALS` and torch dtypes, by exact name
    (torch reads it with a bare ``pickle.load``: a crafted file would run code). A dotted name (protocol 4
    walks attributes: ``torch.ctypes.CDLL``) is refused."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if "." not in name:
            if (module, name) in _DCP_GLOBALS:
                return super().find_class(module, name)
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
        raise UnsafeCheckpointError(f"{self.path}: refusing to load: it pickles {module}.{name}")


def _read_dcp(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``state_dict`` tensors of a DCP folder: ``.metadata`` read once, by the restricted unpickler (DCP's
    own reader is handed that object instead of unpickling the file again), and only tensors loaded (which
    DCP reads ``weights_only``), no byte entries."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

    path = folder / ".metadata"
    with open(path, "rb") as stream:
        metadata = _DcpMetadataUnpickler(stream, path).load()
    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpointError(f"{path}: not a torch.distributed.checkpoint metadata file")

    class CheckedReader(dcp.FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:  # as torch's, minus its pickle.load
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    paths = metadata.planner_data or {}
    state: dict[str, torch.Tensor] = {}
    for fqn, entry in metadata.state_dict_metadata.items():
        keys = paths.get(fqn, tuple(fqn.split(".", 1)))
        if keys[0] == "state_dict" and isinstance(entry, TensorStorageMetadata):
            state[".".join(str(k) for k in keys[1:])] = torch.empty(entry.size, dtype=entry.properties.dtype)
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process", category=UserWarning)
        dcp.load({"state_dict": state}, storage_reader=CheckedReader(str(folder)), no_dist=True)
    meta = _torch_load(folder / "meta.pt") if (folder / "meta.pt").is_file() else {}
    return state, meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trainable state (fp32, CPU, keys as in ``module.named_parameters()``) and the checkpoint's
    metadata (``hyper_parameters``, ``metaprompt_module``, ``global_step``...).

    Raises:
        FileNotFoundError: ``path`` is neither a checkpoint file nor a DeepSpeed/FSDP2 checkpoint folder.
    """
    path = Path(path)
    if path.is_file():
        checkpoint = _torch_load(path)
        return checkpoint.pop("state_dict"), checkpoint
    if path.is_dir() and ((path / "latest").is_file() or (path / "checkpoint").is_dir()):
        return _read_deepspeed(path)
    if path.is_dir() and (path / ".metadata").is_file():
        return _read_dcp(path)
    raise FileNotFoundError(
        f"{path}: expected a .ckpt file, a DeepSpeed checkpoint folder (with 'latest' or 'checkpoint/') "
        "or a torch.distributed.checkpoint folder (with '.metadata')"
    )


def _import(class_path: str) -> type:
    """The stage class a checkpoint names: only metaprompt's own modules are imported, and only a
    :class:`~metaprompt.modules.base.PromptModule` subclass is accepted."""
    from metaprompt.modules.base import PromptModule

    module, _, name = class_path.rpartition(".")
    if module != "metaprompt" and not module.startswith("metaprompt."):
        raise UnsafeCheckpointError(f"refusing class path {class_path!r}: not a metaprompt stage module")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, PromptModule)):
        raise UnsafeCheckpointError(f"refusing class path {class_path!r}: not a metaprompt stage (PromptModule)")
    return cls


class _NoTokenizer:
    """Stands in when the backbone's tokenizer is not available offline: adapter values are loaded from
    the checkpoint, so init-text token ids are never used."""

    def __call__(self, text: str, **kwargs) -> dict[str, list[int]]:
        return {"input_ids": [0]}


def rebuild_adapter(module_cls: type, hparams: dict[str, Any]):
    """A stage module with its adapter built on a meta-device backbone (values to be loaded)."""
    from metaprompt.backbones import build_on_meta, load_tokenizer

    module = module_cls(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    module.backbone = build_on_meta(module.hparams.backbone, dtype=torch.float32)
    try:
        module.tokenizer = load_tokenizer(module.hparams.backbone)
    except Exception:  # gated/offline tokenizer: not needed to rebuild shapes
        module.tokenizer = _NoTokenizer()
    module.build_adapter()
    return module


def consolidate(checkpoint: str | Path, out_folder: str | Path, module_cls: type | None = None) -> Path:
    """Write the portable adapter of a (possibly sharded) training checkpoint.

    Args:
        checkpoint: A ``.ckpt`` file, a DeepSpeed checkpoint folder, or an FSDP2 (DCP) folder.
        out_folder: Where ``adapter.safetensors`` + ``adapter.json`` go.
        module_cls: The stage class (default: the class path the checkpoint records).

    Returns:
        ``out_folder``.

    Raises:
        KeyError: the checkpoint lacks a trainable tensor of the stage, or names no stage class.
    """
    state, meta = read_checkpoint(checkpoint)
    if module_cls is None:
        class_path = meta.get(MODULE_KEY) or meta.get("hyper_parameters", {}).get("_class_path")
        if not class_path:
            raise KeyError(f"{checkpoint}: no '{MODULE_KEY}' recorded; pass module_cls")
        module_cls = _import(class_path)
    module = rebuild_adapter(module_cls, dict(meta.get("hyper_parameters", {})))
    wanted = {n for n, p in module.named_parameters() if p.requires_grad}
    missing = sorted(wanted - state.keys())
    if missing:
        raise KeyError(f"{checkpoint}: trainable tensors {missing} are not in the checkpoint (has {sorted(state)})")
    module.load_state_dict({k: state[k].float() for k in wanted}, strict=False, assign=True)
    module.export_adapter(str(out_folder))
    return Path(out_folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metaprompt.consolidation", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help=".ckpt file, DeepSpeed folder or FSDP2 (DCP) folder")
    parser.add_argument("out_folder", help="adapter folder to write")
    args = parser.parse_args(argv)
    print(consolidate(args.checkpoint, args.out_folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
