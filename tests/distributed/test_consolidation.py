"""``metaprompt.consolidation.consolidate`` on single-process checkpoints (the sharded formats are covered by
test_strategies.py): the adapter it writes equals the one the live module exports, without loading
the backbone's weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from metaprompt.adapters import load_adapter
from metaprompt.consolidation import consolidate, read_checkpoint, rebuild_adapter
from metaprompt.data.collate import CausalLMCollator
from metaprompt.modules import LoRA, TeacherPromptTuning
from metaprompt.scale import full_adapter

TASKS = ["a", "b"]


def _batches(n=2):
    collate = CausalLMCollator(pad_token_id=2)
    g = torch.Generator().manual_seed(0)
    rows = [
        [
            {
                "uid": f"{s}-{i}",
                "task_id": i % 2,
                "prompt_ids": torch.randint(3, 5000, (5 + i,), generator=g).tolist(),
                "target_ids": torch.randint(3, 5000, (3,), generator=g).tolist(),
            }
            for i in range(4)
        ]
        for s in range(n)
    ]
    return DataLoader([collate(r) for r in rows], batch_size=None)


@pytest.fixture(scope="module", params=["teacher", "lora"])
def trained(request, tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp(request.param)
    kw = dict(backbone="tiny-llama", task_names=TASKS, optim={"lr": 0.05}, seed=0)
    module = TeacherPromptTuning(prompt_length=4, **kw) if request.param == "teacher" else LoRA(r=2, dropout=0.0, **kw)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=folder, save_last=True)],
    )
    trainer.fit(module, train_dataloaders=_batches())
    with full_adapter(module):  # a no-op on one device
        module.export_adapter(str(folder / "live"))
    return module, folder


def test_consolidated_adapter_equals_the_live_export(trained, tmp_path):
    module, folder = trained
    out = consolidate(folder / "last.ckpt", tmp_path / "adapter")  # stage class read from the checkpoint
    live, live_config = load_adapter(folder / "live")
    consolidated, config = load_adapter(out)
    assert config == live_config and set(consolidated) == set(live)
    for key in live:
        assert torch.equal(consolidated[key], live[key]), key


def test_checkpoint_holds_the_adapter_and_names_its_stage(trained):
    module, folder = trained
    state, meta = read_checkpoint(folder / "last.ckpt")
    assert set(state) == {n for n, p in module.named_parameters() if p.requires_grad}
    assert meta["metaprompt_module"] == f"{type(module).__module__}.{type(module).__name__}"


def test_rebuild_loads_no_backbone_weights(trained):
    module, folder = trained
    _, meta = read_checkpoint(folder / "last.ckpt")
    rebuilt = rebuild_adapter(type(module), meta["hyper_parameters"])
    frozen = [p for n, p in rebuilt.named_parameters() if not p.requires_grad]
    assert frozen and all(p.is_meta for p in frozen)


def test_unknown_checkpoint_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a .ckpt file, a DeepSpeed checkpoint folder"):
        read_checkpoint(tmp_path)
