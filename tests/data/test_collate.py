import pytest
import torch

from metaprompt.data.collate import IGNORE_INDEX, CausalLMCollator


def rows():
    return [
        {"uid": "a", "task_id": 0, "prompt_ids": [5, 6, 7], "target_ids": [8, 2]},
        {"uid": "b", "task_id": 3, "prompt_ids": [9], "target_ids": [10, 11, 2]},
    ]


def test_train_batch_masks_prompt_and_padding():
    b = CausalLMCollator(pad_token_id=0)(rows())
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 2], [9, 10, 11, 2, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b["labels"].tolist() == [[IGNORE_INDEX] * 3 + [8, 2], [IGNORE_INDEX, 10, 11, 2, IGNORE_INDEX]]
    assert b["task_ids"].tolist() == [0, 3] and "uids" not in b


def test_eval_batch_left_pads_prompts():
    b = CausalLMCollator(pad_token_id=0, eval_mode=True)(rows())
    assert b["prompt_input_ids"].tolist() == [[5, 6, 7], [0, 0, 9]]
    assert b["prompt_attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert b["uids"] == ["a", "b"]
    assert b["prompt_input_ids"].dtype == torch.long


def test_train_batch_keeps_at_most_max_target_tokens():
    b = CausalLMCollator(pad_token_id=0, max_target_tokens=2)(rows())
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 2], [9, 10, 11, 0, 0]]  # row b's third target token cut
    assert b["labels"].tolist() == [[IGNORE_INDEX] * 3 + [8, 2], [IGNORE_INDEX, 10, 11, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="max_target_tokens"):
        CausalLMCollator(pad_token_id=0, max_target_tokens=0)


def test_datamodule_caps_training_targets_only(data_root):
    from metaprompt.data import MultitaskDataModule

    dm = MultitaskDataModule(
        "medquad", root=data_root, max_length=128, min_prompt_tokens=16, batch_size=2, k_shot=8,
        max_eval_per_task=4, max_train_target_tokens=5,
    )  # fmt: skip
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert int((train["labels"] != IGNORE_INDEX).sum(1).max()) <= 5
    lengths = [len(t) for t in dm.splits["train"]["target_ids"]]
    assert dm.report["medquad"]["train"]["target_cut"] == sum(n > 5 for n in lengths) > 0  # counted, not silent
    val = next(iter(dm.val_dataloader()))
    assert int((val["labels"] != IGNORE_INDEX).sum(1).max()) > 5  # evaluation sees whole answers
