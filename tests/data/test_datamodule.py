import os

import pytest
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


def test_token_cache_is_reused(data_root, tmp_path, monkeypatch):
    from metaprompt.data.encoding import PromptEncoder

    first = make(tmp_path, k_shot=16)
    first.setup("fit")
    files = sorted(p.name for p in tmp_path.glob("*.arrow"))
    assert files
    calls, encode = [], PromptEncoder.encode_batch
    monkeypatch.setattr(PromptEncoder, "encode_batch", lambda self, *a, **k: calls.append(1) or encode(self, *a, **k))
    second = make(tmp_path, k_shot=16)
    second.setup("fit")
    assert calls == []  # a second start tokenises nothing
    assert sorted(p.name for p in tmp_path.glob("*.arrow")) == files
    assert {s: d.to_dict() for s, d in second.splits.items()} == {s: d.to_dict() for s, d in first.splits.items()}
    broken = tmp_path / "broken"  # e.g. a foreign or damaged file: tokenised again, not read
    broken.write_bytes(b"not an arrow file")
    os.replace(broken, tmp_path / files[0])  # a new inode: the open datasets keep their memory map
    third = make(tmp_path, k_shot=16)
    third.setup("fit")
    assert calls and {s: d.to_dict() for s, d in third.splits.items()} == {
        s: d.to_dict() for s, d in first.splits.items()
    }


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


def eval_uids(dm, split="test"):
    return sorted(dm.splits[split]["uid"])


def test_eval_sample_is_fixed_by_eval_seed_not_by_the_training_seed(data_root, tmp_path):
    dms = {}
    for seed, eval_seed in ((0, 0), (1, 0), (0, 1)):
        dm = make(tmp_path, tasks="rqe", k_shot=4, seed=seed, eval_seed=eval_seed)
        dm.setup("fit")
        dms[seed, eval_seed] = dm
    train = {key: sorted(dm.splits["train"]["uid"]) for key, dm in dms.items()}
    assert train[0, 0] != train[1, 0]  # the training seed still draws its own k-shot set
    assert eval_uids(dms[0, 0]) == eval_uids(dms[1, 0]) and len(eval_uids(dms[0, 0])) == 8
    assert eval_uids(dms[0, 0]) != eval_uids(dms[0, 1])


def test_eval_caps_by_scoring_kind(data_root, tmp_path):
    """rqe (NLI), head_qa (multiple choice), gad (a pair's relation) are ranked, bioinfer (open RE) is
    generated; task names win."""
    caps = {"ranked": 6, "generated": 3}
    dm = MultitaskDataModule(
        tasks="gad,rqe,head_qa,bioinfer", backbone="tiny-llama", max_length=256, k_shot=0, max_eval_per_task=caps,
        cache_dir=str(tmp_path),
    )  # fmt: skip
    dm.setup("test")
    assert {t: dm.report[t]["test"]["examples"] for t in dm.task_names} == {
        "gad": 6,
        "rqe": 6,
        "head_qa": 6,
        "bioinfer": 3,
    }
    assert dm.eval_cap("rqe", [dm.records[u] for u in dm.splits["test"]["uid"] if dm.task_of(u) == "rqe"]) == 6
    by_name = MultitaskDataModule(tasks="rqe", backbone="tiny-llama", max_eval_per_task={"rqe": 2, "ranked": 6})
    assert by_name.eval_cap("rqe", []) == 2
    assert MultitaskDataModule(tasks="rqe", max_eval_per_task={"generated": 5}).eval_cap("rqe", []) == 5  # empty
    from metaprompt.data.datamodule import PROTOCOL_EVAL_CAPS

    assert PROTOCOL_EVAL_CAPS == {"ranked": 200, "generated": 100}
    with pytest.raises(ValueError, match=r"unknown keys \['nli'\]"):
        MultitaskDataModule(tasks="rqe", max_eval_per_task={"nli": 5})


def test_tasks_is_required():
    import inspect

    assert inspect.signature(MultitaskDataModule).parameters["tasks"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="tasks"):
        MultitaskDataModule()
