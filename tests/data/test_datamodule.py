import torch

from metaprompt.data import IGNORE_INDEX, MultitaskDataModule


def make(tmp_path, **kw):
    kw.setdefault("tasks", "gad,rqe")
    return MultitaskDataModule(
        backbone="tiny-llama", max_length=256, batch_size=4, cache_dir=str(tmp_path), max_eval_per_task=8, **kw
    )


def test_mixed_batches_carry_task_ids_and_target_only_labels(data_root, tmp_path):
    dm = make(tmp_path, k_shot=16)
    dm.setup("fit")
    assert dm.task_names == ["gad", "rqe"] and dm.num_tasks == 2
    assert dm.report["gad"]["train"]["examples"] == 16 and dm.report["rqe"]["validation"]["examples"] == 8
    seen = set()
    for batch in dm.train_dataloader():
        seen.update(batch["task_ids"].tolist())
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            target = ids[labels != IGNORE_INDEX]
            assert len(target) > 0 and target[-1].item() == dm.tokenizer.eos_token_id
    assert seen == {0, 1}
    batch = next(iter(dm.val_dataloader()))
    assert set(batch["uids"]) <= set(dm.records) and batch["prompt_input_ids"].shape[0] == 4


def test_zero_shot_has_no_training_rows_and_eval_is_deterministic(data_root, tmp_path):
    dm = make(tmp_path, k_shot=0)
    dm.setup("validate")
    assert len(dm.train_dataloader()) == 0
    uids = [u for b in dm.val_dataloader() for u in b["uids"]]
    dm2 = make(tmp_path, k_shot=0)
    dm2.setup("validate")
    assert uids == [u for b in dm2.val_dataloader() for u in b["uids"]]


def test_token_cache_is_reused(data_root, tmp_path):
    make(tmp_path, k_shot=16).setup("fit")
    files = sorted(p.name for p in tmp_path.glob("*.arrow"))
    assert files
    make(tmp_path, k_shot=16).setup("fit")
    assert sorted(p.name for p in tmp_path.glob("*.arrow")) == files


def test_truncation_is_counted(data_root, tmp_path):
    dm = MultitaskDataModule(
        tasks="clinifact",
        backbone="tiny-llama",
        max_length=128,
        min_prompt_tokens=32,
        batch_size=2,
        k_shot=32,
        max_eval_per_task=4,
        cache_dir=str(tmp_path),
    )
    dm.setup("fit")
    assert dm.report["clinifact"]["train"]["truncated"] > 0
    lengths = torch.tensor([len(r["prompt_ids"]) + len(r["target_ids"]) for r in dm.splits["train"]])
    assert (lengths <= 128).all()
