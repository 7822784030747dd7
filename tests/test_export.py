"""`metaprompt export`: a target task's materialised prompt as a plain PEFT prompt-tuning adapter, whose
logits under `PeftModel.from_pretrained` equal metaprompt's on the same input."""

from __future__ import annotations

import json

import pytest
import torch

from metaprompt.__main__ import main
from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.backbones import load_backbone
from metaprompt.export import task_prompt
from metaprompt.forward.prompted import prompted_forward
from metaprompt.prompts import DecomposedPrompt


def adapters(tmp_path, d: int, length: int = 4, rank: int = 2):
    """A metaprompt adapter (2 sources) and a factors-only target adapter on it (2 targets)."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    meta = {"shared_prompt": rand(length, d), "task_cols": rand(2, length, rank), "task_rows": rand(2, d, rank)}
    save_adapter(tmp_path / "distill" / "adapter", meta, AdapterConfig(
        kind="metaprompt", backbone="tiny-llama", hidden_size=d, prompt_length=length, rank=rank, task_names=["s1", "s2"]))  # fmt: skip
    target = {"task_cols": rand(2, length, rank), "task_rows": rand(2, d, rank)}
    save_adapter(tmp_path / "target" / "adapter", target, AdapterConfig(
        kind="target", backbone="tiny-llama", hidden_size=d, prompt_length=length, rank=rank, task_names=["t1", "t2"],
        extra={"metaprompt_adapter": str(tmp_path / "distill" / "adapter")}))  # fmt: skip
    return meta, target


def test_exported_target_prompt_gives_metaprompts_logits_in_plain_peft(tmp_path):
    from peft import PeftModel

    model, tokenizer = load_backbone("tiny-llama")
    model.eval()
    d = model.config.hidden_size
    meta, target = adapters(tmp_path, d)
    out = tmp_path / "peft"
    assert main(["export", "--adapter", str(tmp_path / "target" / "adapter"), "--task", "t2", str(out)]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4 and config["token_dim"] == d
    assert "apply_chat_template" in (out / "INPUT.md").read_text()

    # metaprompt's own path: the DecomposedPrompt of the target module, the injection of every stage
    prompt = DecomposedPrompt(2, 4, d, 2)
    with torch.no_grad():
        prompt.shared_prompt.copy_(meta["shared_prompt"])
        prompt.task_cols.copy_(target["task_cols"])
        prompt.task_rows.copy_(target["task_rows"])
    ids = torch.tensor([tokenizer("Premise: fever. Hypothesis: febrile. Answer:")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = prompted_forward(model, ids, mask, ids.clone(), prompt(torch.tensor([1])), task_ids=torch.tensor([1]))
        peft_model = PeftModel.from_pretrained(model, out)
        theirs = peft_model(input_ids=ids, attention_mask=mask).logits  # [1, l + T, V]
    n = ids.shape[1]
    torch.testing.assert_close(theirs[0, 4 - 1 : 4 + n - 1], ours.target_logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(theirs[0, 3:-1], peft_model.get_base_model()(input_ids=ids).logits[0], atol=1e-3)


def test_task_prompt_of_each_adapter_kind(tmp_path):
    meta, target = adapters(tmp_path, d=8)
    got, _ = task_prompt(tmp_path / "distill" / "adapter", "s2")
    torch.testing.assert_close(got, meta["shared_prompt"] * (meta["task_cols"][1] @ meta["task_rows"][1].T))
    prompts = torch.randn(2, 3, 8)
    save_adapter(tmp_path / "pt", {"prompts": prompts}, AdapterConfig(
        kind="prompt_tuning", backbone="tiny-llama", hidden_size=8, prompt_length=3, task_names=["a", "b"]))  # fmt: skip
    torch.testing.assert_close(task_prompt(tmp_path / "pt", "b")[0], prompts[1])
    with pytest.raises(ValueError, match=r"no task 'zz'; its tasks are \['t1', 't2'\]"):
        task_prompt(tmp_path / "target" / "adapter", "zz")


def test_export_errors_are_one_line(tmp_path, capsys):
    adapters(tmp_path, d=8)
    (tmp_path / "distill" / "adapter").rename(tmp_path / "moved")  # the target's P* is gone
    assert main(["export", "--adapter", str(tmp_path / "target" / "adapter"), "--task", "t1", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("metaprompt export: ")
        and "its metaprompt adapter" in err
        and err.rstrip().endswith("(P* lives there)")
    )


def test_export_peft_mpt_writes_every_task(tmp_path):
    adapters(tmp_path, d=8)
    out = tmp_path / "mpt"
    assert main(["export", "--adapter", str(tmp_path / "target" / "adapter"), "--format", "peft-mpt", str(out)]) == 0
    assert json.loads((out / "tasks.json").read_text()) == ["t1", "t2"]
    assert json.loads((out / "adapter_config.json").read_text())["num_tasks"] == 2
