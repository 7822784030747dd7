"""Checkpoint consolidation loads nothing unsafe: a pickle that would run code, or a class path outside
metaprompt's stages, is refused with the file named (and nothing runs)."""

from __future__ import annotations

import os

import pytest
import torch

from metaprompt.consolidation import UnsafeCheckpointError, check_pickle, consolidate, read_checkpoint
from metaprompt.modules.base import MODULE_KEY


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: run a command while being unpickled
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {}, "x": Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf"{path}: refusing to load: it pickles posix.system"):
        consolidate(path, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_only_metaprompt_stage_classes_are_imported(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, MODULE_KEY: "subprocess.Popen"}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing class path 'subprocess.Popen': not a metaprompt"):
        consolidate(path, tmp_path / "out")
    torch.save({"state_dict": {}, "hyper_parameters": {}, MODULE_KEY: "metaprompt.pipeline.Pipeline"}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"not a metaprompt stage \(PromptModule\)"):
        consolidate(path, tmp_path / "out")


def test_plain_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"prompt": torch.ones(2, 3)}, "hyper_parameters": {"lr": 0.1}, "global_step": 2}, path)
    assert check_pickle(path) == []
    state, meta = read_checkpoint(path)
    assert state["prompt"].shape == (2, 3) and meta["hyper_parameters"] == {"lr": 0.1}


def _dcp_folder(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "dcp"
    state = {"prompt.weight": torch.arange(6.0).reshape(2, 3), "factors.u": torch.ones(4, dtype=torch.bfloat16)}
    with pytest.warns(UserWarning, match="single process"):
        dcp.save({"state_dict": state, "global_step": 3}, checkpoint_id=str(folder), no_dist=True)
    torch.save({"hyper_parameters": {"lr": 0.1}}, folder / "meta.pt")
    return folder, state


def test_a_dcp_folder_is_read_tensor_by_tensor(tmp_path):
    folder, expected = _dcp_folder(tmp_path)
    state, meta = read_checkpoint(folder)
    assert state.keys() == expected.keys() and meta == {"hyper_parameters": {"lr": 0.1}}
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor)


def test_a_dcp_metadata_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    import pickle

    folder, _ = _dcp_folder(tmp_path)
    marker = tmp_path / "pwned"
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refusing to load: it pickles posix.system"):
        consolidate(folder, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def _stack_global_payload(module: str, name: str, command: str) -> bytes:
    """A protocol-4 pickle calling ``module``'s attribute path ``name`` (dotted: pickle walks it) on ``command``."""
    text = lambda s: b"\x8c" + bytes([len(s.encode())]) + s.encode()  # noqa: E731  SHORT_BINUNICODE
    return b"\x80\x04" + text(module) + text(name) + b"\x93" + text(command) + b"\x85R."  # STACK_GLOBAL, TUPLE1, REDUCE


def test_a_dotted_global_reaching_past_the_allowed_module_is_refused(tmp_path):
    import pickle

    live, marker = tmp_path / "live", tmp_path / "pwned"
    payload = _stack_global_payload("torch.distributed.checkpoint.metadata", "os.system", f"touch {live}")
    pickle.loads(payload)  # the payload is real: unrestricted, it runs
    assert live.exists()
    folder, _ = _dcp_folder(tmp_path)
    (folder / ".metadata").write_bytes(
        _stack_global_payload("torch.distributed.checkpoint.metadata", "os.system", f"touch {marker}")
    )
    with pytest.raises(
        UnsafeCheckpointError,
        match=r"refusing to load: it pickles torch\.distributed\.checkpoint\.metadata\.os\.system",
    ):
        consolidate(folder, tmp_path / "out")
    assert not marker.exists()
