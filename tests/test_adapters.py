"""Adapter files: round trips, every validation error, atomic writes, and the PEFT MPT export."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from metaprompt import adapters
from metaprompt.adapters import AdapterConfig, export_peft_mpt, load_adapter, save_adapter

TASKS = ["ncbi_disease", "mednli", "pubmed_qa"]


def make_config(kind="metaprompt", **overrides):
    values = {
        "kind": kind,
        "backbone": "tiny-llama",
        "hidden_size": 8,
        "prompt_length": 4,
        "rank": 2 if kind in ("metaprompt", "target") else 0,
        "task_names": list(TASKS),
    }
    values.update(overrides)
    return AdapterConfig(**values)


def factor_tensors(tasks=3, length=4, d=8, rank=2):
    generator = torch.Generator().manual_seed(0)
    return {
        "shared_prompt": torch.randn(length, d, generator=generator),
        "task_cols": torch.randn(tasks, length, rank, generator=generator),
        "task_rows": torch.randn(tasks, d, rank, generator=generator),
    }


def no_tmp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tensors"),
    [
        ("metaprompt", factor_tensors()),
        ("teacher", {"prompts": torch.randn(3, 4, 8)}),
        ("prompt_tuning", {"prompts": torch.randn(3, 4, 8, dtype=torch.bfloat16)}),
        ("target", factor_tensors()),
    ],
)
def test_round_trip(tmp_path, kind, tensors):
    config = make_config(kind, extra={"note": [1, 2]})
    assert save_adapter(tmp_path / "a", tensors, config) == tmp_path / "a"
    loaded, loaded_config = load_adapter(tmp_path / "a", expect_kind=kind, backbone="tiny-llama", hidden_size=8)
    assert loaded_config == config
    assert loaded.keys() == tensors.keys()
    for key, tensor in tensors.items():
        assert loaded[key].dtype == tensor.dtype
        assert torch.equal(loaded[key], tensor)


def test_round_trip_target_factors_only_and_lora(tmp_path):
    factors = {k: v for k, v in factor_tensors(tasks=1).items() if k != "shared_prompt"}
    config = make_config("target", task_names=["radnli"], extra={"metaprompt_adapter": "runs/x/distill"})
    save_adapter(tmp_path / "t", factors, config)
    loaded, loaded_config = load_adapter(tmp_path / "t", expect_kind="target")
    assert set(loaded) == {"task_cols", "task_rows"} and loaded_config.extra["metaprompt_adapter"] == "runs/x/distill"

    lora = {"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(4, 8)}
    lora_config = make_config("lora", prompt_length=0, rank=4, task_names=[], extra={"lora_alpha": 8})
    save_adapter(tmp_path / "l", lora, lora_config)
    assert torch.equal(load_adapter(tmp_path / "l")[0][next(iter(lora))], next(iter(lora.values())))


def test_files_on_disk(tmp_path):
    config = make_config()
    tensors = factor_tensors()
    # Non-contiguous and requires_grad tensors are saved as plain contiguous CPU copies.
    tensors["task_rows"] = torch.randn(3, 2, 8).transpose(1, 2).requires_grad_(True)
    save_adapter(tmp_path, tensors, config)
    text = (tmp_path / "adapter.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert json.loads(text)["format_version"] == 1
    from safetensors import safe_open

    with safe_open(tmp_path / "adapter.safetensors", framework="pt") as reader:
        assert json.loads(reader.metadata()["metaprompt_config"]) == json.loads(text)
    assert torch.equal(load_file(tmp_path / "adapter.safetensors")["task_rows"], tensors["task_rows"].detach())


# --- config validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "adapterx"}, "kind must be one of"),
        ({"backbone": ""}, "backbone must be a non-empty"),
        ({"hidden_size": 0}, "hidden_size must be an int > 0"),
        ({"hidden_size": 8.0}, "hidden_size must be an int > 0"),
        ({"prompt_length": 0}, "prompt_length must be an int > 0"),
        ({"rank": 0}, "rank must be an int > 0 for kind 'metaprompt'"),
        ({"kind": "teacher", "rank": 2}, "rank must be 0 for kind 'teacher'"),
        ({"kind": "lora", "prompt_length": 3}, "prompt_length must be 0 for kind 'lora'"),
        ({"task_names": "ncbi"}, "task_names must be a list"),
        ({"task_names": ["a", ""]}, "task_names must be a list of non-empty"),
        ({"task_names": ["a", "a"]}, "task_names must be unique"),
        ({"task_names": []}, "at least one task"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"extra": []}, "extra must be a dict"),
        ({"extra": {"x": object()}}, "extra must be JSON-serialisable"),
        ({"metaprompt_version": 1}, "metaprompt_version must be a string"),
    ],
)
def test_config_validation(overrides, message):
    values = {"kind": "metaprompt", "backbone": "b", "hidden_size": 8, "prompt_length": 4, "rank": 1}
    values["task_names"] = ["a"]
    values.update(overrides)
    with pytest.raises(ValueError, match=message):
        AdapterConfig(**values)


# --- load errors -----------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "distill"
    save_adapter(folder, factor_tensors(), make_config())
    return folder


def rewrite_json(folder, **changes):
    data = json.loads((folder / "adapter.json").read_text())
    data.update(changes)
    (folder / "adapter.json").write_text(json.dumps(data))


def test_missing_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match=r"adapter\.json: not found"):
        load_adapter(tmp_path / "nowhere")
    (saved / "adapter.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter\.safetensors: not found"):
        load_adapter(saved)


def test_unknown_format_version(saved):
    rewrite_json(saved, format_version=7)
    with pytest.raises(ValueError, match=r"adapter\.json: unknown format_version 7"):
        load_adapter(saved)


def test_bad_json_and_unknown_keys(saved):
    rewrite_json(saved, colour="blue")
    with pytest.raises(ValueError, match=r"adapter\.json: unknown keys \['colour'\]"):
        load_adapter(saved)
    (saved / "adapter.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter\.json: not valid JSON"):
        load_adapter(saved)
    rewrite_json_value = {"format_version": 1, "kind": "metaprompt", "backbone": "b", "hidden_size": -1}
    (saved / "adapter.json").write_text(json.dumps(rewrite_json_value))
    with pytest.raises(ValueError, match=r"adapter\.json: hidden_size must be an int > 0"):
        load_adapter(saved)


def test_wrong_kind_and_hidden_size(saved):
    with pytest.raises(ValueError, match=r"adapter\.json: kind 'metaprompt' but expected 'teacher'"):
        load_adapter(saved, expect_kind="teacher")
    with pytest.raises(ValueError, match=r"adapter\.json: hidden_size 8 but the backbone has 4096"):
        load_adapter(saved, hidden_size=4096)


def test_backbone_mismatch_only_warns(saved):
    with pytest.warns(UserWarning, match=r"adapter\.json: adapter trained on backbone 'tiny-llama', loading onto 'x'"):
        tensors, _ = load_adapter(saved, backbone="x")
    assert set(tensors) == {"shared_prompt", "task_cols", "task_rows"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(saved, backbone="tiny-llama")


def test_tensor_shape_inconsistent_with_config(saved):
    tensors = factor_tensors()
    tensors["shared_prompt"] = torch.randn(5, 8)
    save_file(tensors, saved / "adapter.safetensors")  # header without our config: not cross-checked
    with pytest.raises(
        ValueError, match=r"adapter\.safetensors: shared_prompt has shape \[5, 8\] but the config says \[4, 8\]"
    ):
        load_adapter(saved)


def test_tensor_keys_and_dtypes_checked(saved):
    tensors = factor_tensors()
    del tensors["task_rows"]
    tensors["extra_thing"] = torch.zeros(1)
    save_file(tensors, saved / "adapter.safetensors")
    with pytest.raises(
        ValueError, match=r"adapter\.safetensors: .*missing \['task_rows'\], unexpected \['extra_thing'\]"
    ):
        load_adapter(saved)
    with pytest.raises(ValueError, match="task_cols must be a floating-point"):
        save_adapter(saved, {**factor_tensors(), "task_cols": torch.zeros(3, 4, 2, dtype=torch.long)}, make_config())


def test_target_without_shared_prompt_needs_its_metaprompt(tmp_path):
    factors = {k: v for k, v in factor_tensors().items() if k != "shared_prompt"}
    with pytest.raises(ValueError, match=r"extra\['metaprompt_adapter'\]"):
        save_adapter(tmp_path, factors, make_config("target"))
    with pytest.raises(ValueError, match=r"missing \['shared_prompt'\]"):
        save_adapter(tmp_path, factors, make_config("metaprompt"))


def test_corrupt_tensor_file_and_mixed_saves(saved):
    other = make_config(task_names=["x", "y", "z"])
    (saved / "adapter.json").write_text(other.to_json())
    with pytest.raises(ValueError, match=r"adapter\.safetensors: its embedded config differs from adapter\.json"):
        load_adapter(saved)
    (saved / "adapter.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{half a header")
    with pytest.raises(ValueError, match=r"adapter\.safetensors: not a readable safetensors file"):
        load_adapter(saved)


# --- atomicity -------------------------------------------------------------------------------------


def test_save_replaces_partial_files_and_leaves_no_tmp(tmp_path):
    (tmp_path / "adapter.safetensors").write_bytes(b"\x00\x01partial")
    (tmp_path / "adapter.json").write_text('{"kind": "meta')
    save_adapter(tmp_path, factor_tensors(), make_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]
    tensors, _ = load_adapter(tmp_path)
    assert torch.equal(tensors["shared_prompt"], factor_tensors()["shared_prompt"])


def test_interrupted_save_keeps_previous_adapter(tmp_path, monkeypatch):
    save_adapter(tmp_path, factor_tensors(), make_config())

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as stream:
            stream.write(b"half")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(adapters, "save_file", crash)
    new = {k: v + 1 for k, v in factor_tensors().items()}
    with pytest.raises(KeyboardInterrupt):
        save_adapter(tmp_path, new, make_config())
    assert no_tmp_files(tmp_path)
    tensors, _ = load_adapter(tmp_path)
    assert torch.equal(tensors["task_cols"], factor_tensors()["task_cols"])


# --- PEFT export -----------------------------------------------------------------------------------


def test_export_peft_mpt_loads_in_peft(tmp_path):
    from peft import PeftModel

    from metaprompt.backbones import load_backbone

    model, _ = load_backbone("tiny-llama")  # a fresh one: PeftModel wraps the model it is given
    d = model.config.hidden_size
    tasks, length, rank = 3, 5, 2
    factors = factor_tensors(tasks=tasks, length=length, d=d, rank=rank)
    folder = export_peft_mpt(tmp_path / "peft", *factors.values(), base_model_name="tiny-llama")
    assert no_tmp_files(folder)
    on_disk = load_file(folder / "adapter_model.safetensors")
    assert {k: list(v.shape) for k, v in on_disk.items()} == {
        "prompt_embeddings": [length, d],
        "prefix_task_cols": [tasks, length, rank],
        "prefix_task_rows": [tasks, rank, d],
    }
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "MULTITASK_PROMPT_TUNING" and config["base_model_name_or_path"] == "tiny-llama"

    encoder = PeftModel.from_pretrained(model, folder).prompt_encoder["default"]
    for k in range(tasks):
        with torch.no_grad():
            got = encoder(torch.arange(length)[None], torch.tensor([k]))[0]
        expected = factors["shared_prompt"] * (factors["task_cols"][k] @ factors["task_rows"][k].T)
        torch.testing.assert_close(got, expected)
        assert got.abs().sum() > 0


def test_export_peft_mpt_validates_shapes(tmp_path):
    factors = factor_tensors()
    with pytest.raises(ValueError, match="do not fit shared_prompt"):
        export_peft_mpt(tmp_path, factors["shared_prompt"], factors["task_cols"], factors["task_rows"][:, :5], "b")
    with pytest.raises(ValueError, match=r"shared_prompt must be \[l, d\]"):
        export_peft_mpt(tmp_path, factors["shared_prompt"][None], factors["task_cols"], factors["task_rows"], "b")
