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
