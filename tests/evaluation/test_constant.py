"""The best constant answer: the floor a label-like score has to beat."""

from __future__ import annotations

import pytest

from metaprompt.evaluation.constant import best_constant


def pair_row(holds: int, predicted: int) -> dict:
    stats = {"tp": holds * predicted, "fp": (1 - holds) * predicted, "fn": holds * (1 - predicted)}
    return {"uid": "u", "kind": "re", "scoring": "ranked", "stats": stats}


def test_candidate_pairs_always_the_relation_vs_always_none():
    rows = [pair_row(1, 0)] * 6 + [pair_row(0, 0)] * 4  # 60% of pairs hold; the system said none to all
    answer, score = best_constant(rows, {"re": "f1"})
    assert answer == "the candidate" and score == pytest.approx(2 * 0.6 / 1.6)  # P 0.6, R 1
    assert best_constant([pair_row(0, 1)] * 3, {"re": "f1"})[1] == 0.0  # no pair holds: F1 0 either way


def test_labels_majority_for_accuracy_and_macro_f1():
    gold = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    rows = [
        {"uid": str(i), "kind": "nli", "stats": {"gold": g, "pred": "c", "correct": int(g == "c")}}
        for i, g in enumerate(gold)
    ]
    assert best_constant(rows, {"nli": "accuracy"}) == ("a", pytest.approx(0.5))
    answer, macro = best_constant(rows, {"nli": "macro_f1"})
    assert answer == "a" and macro == pytest.approx((2 * 5 / 15) / 3)  # F1 of 'a' = 2*5/(10+5), others 0


def test_open_extraction_and_text_have_no_constant_answer():
    open_re = [{"uid": "u", "kind": "re", "scoring": "generated", "stats": {"tp": 2, "fp": 0, "fn": 1}}]
    text = [
        {
            "uid": "u",
            "kind": "summarization",
            "stats": dict.fromkeys(["rouge1", "rouge2", "rougeL", "exact_match", "token_f1"], 0.1),
        }
    ]
    assert best_constant(open_re, {"re": "f1"}) is None and best_constant(text, {"summarization": "rougeL"}) is None
    assert best_constant([], {"re": "f1"}) is None
