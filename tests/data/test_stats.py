"""``metaprompt data stats``' truncation-loss column, on one real dataset (the whole table: tests/cli)."""

from __future__ import annotations

import io

from rich.console import Console

from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.stats import dataset_stats, render


def test_stats_count_the_gold_lost_in_train_and_test(data_root, tokenizer):
    ner = dataset_stats("ncbi_disease", data_root, PromptEncoder(tokenizer, max_length=256))
    assert set(ner.lost) == {"train", "test"} and ner.lost["test"].examples == ner.split_sizes["test"]
    assert 0 < ner.lost["train"].gold_lost <= ner.lost["train"].gold_rows <= ner.split_sizes["train"]
    summary = dataset_stats("mediqa_qs", data_root, PromptEncoder(tokenizer, max_length=1024))
    assert summary.lost["test"].source_cut == 0  # short questions: nothing cut
    out = io.StringIO()
    render([ner, summary], Console(file=out, width=220))
    text = out.getvalue()
    train, test = ner.lost["train"], ner.lost["test"]
    assert "lost train/test" in text and f"{train.gold_lost}/{train.examples}  {test.gold_lost}/{test.examples}" in text
    assert f"0/{summary.split_sizes['train']}  0/{summary.split_sizes['test']}" in text
