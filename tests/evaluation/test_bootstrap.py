"""Bootstrap intervals from per-example statistics: corpus-level recomputation, coverage, determinism,
shrinkage with n, paired differences; and the point estimate equals the evaluator's score."""

from __future__ import annotations

import numpy as np
import pytest

from metaprompt.evaluation import (
    LabelAccuracyF1,
    SetF1,
    TaskEvaluator,
    bootstrap_ci,
    paired_bootstrap,
    paired_mean_bootstrap,
    scores_for_counts,
)
from metaprompt.tasks.records import Entity, NerRecord, NliRecord, QaRecord, SummarizationRecord


def ner_rows(stats):  # (tp, fp, fn) per example
    return [{"uid": f"n{i}", "kind": "ner", "stats": dict(zip(("tp", "fp", "fn"), s))} for i, s in enumerate(stats)]


def acc_rows(correct, prefix="x"):
    return [
        {"uid": f"{prefix}{i}", "kind": "multiple_choice", "stats": {"correct": int(c)}} for i, c in enumerate(correct)
    ]


def test_a_resample_recomputes_corpus_f1_not_a_mean_of_example_f1s():
    # (pred, gold) items per example; example F1s: 1, 0, 0.75; stats (tp, fp, fn): (1,0,0), (0,0,9), (3,1,1)
    examples = [(["a"], ["a"]), ([], list("abcdefghi")), (list("abcd"), list("abce"))]
    rows = [{"uid": str(i), "kind": "ner", "stats": SetF1.example_stats(p, g)} for i, (p, g) in enumerate(examples)]
    assert [r["stats"] for r in rows] == [
        {"tp": 1, "fp": 0, "fn": 0},
        {"tp": 0, "fp": 0, "fn": 9},
        {"tp": 3, "fp": 1, "fn": 1},
    ]
    f1 = {"ner": "f1"}
    p, r = 4 / 5, 4 / 14  # the sample itself: tp 4, fp 1, fn 10
    assert scores_for_counts(rows, f1, np.ones((1, 3)))[0] == pytest.approx(2 * p * r / (p + r))
    # a resample drawing example 0 twice and example 2 once: tp 5, fp 1, fn 1
    (score,) = scores_for_counts(rows, f1, np.array([[2, 0, 1]]))
    assert score == pytest.approx(5 / 6)
    assert score != pytest.approx((1 + 1 + 0.75) / 3)  # not the mean of per-example F1s
    metric = SetF1()  # the same resample fed to the metric itself
    drawn = [examples[0], examples[0], examples[2]]
    metric.update([p for p, _ in drawn], [g for _, g in drawn])
    assert score == pytest.approx(float(metric.compute()["f1"]))


def test_a_resample_recomputes_macro_f1_like_the_metric():
    labels = ("a", "b", "c")
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("c", ""), ("c", "a"), ("b", "b")]  # (gold, pred)
    metric = LabelAccuracyF1(labels)
    rows = [{"uid": str(i), "kind": "nli", "stats": metric.example_stats(p, g)} for i, (g, p) in enumerate(pairs)]
    counts = np.array([[0, 2, 1, 1, 0, 3], [1, 1, 1, 1, 1, 1]])
    macro = scores_for_counts(rows, {"nli": "macro_f1"}, counts)
    accuracy = scores_for_counts(rows, {"nli": "accuracy"}, counts)
    for resample in range(2):
        expanded = [pairs[i] for i, c in enumerate(counts[resample]) for _ in range(c)]
        metric.reset()
        metric.update([p for _, p in expanded], [g for g, _ in expanded])
        out = metric.compute()
        assert macro[resample] == pytest.approx(float(out["macro_f1"]))
        assert accuracy[resample] == pytest.approx(float(out["accuracy"]))


def test_interval_covers_the_estimate_is_seeded_and_shrinks_with_n():
    small = acc_rows([1, 0, 1, 1] * 10)  # n = 40, accuracy .75
    large = acc_rows([1, 0, 1, 1] * 250)  # n = 1000, same accuracy
    primary = {"multiple_choice": "accuracy"}
    ci = bootstrap_ci(small, primary, n_resamples=1000, seed=0)
    assert ci.n == 40 and ci.estimate == 0.75
    assert ci.low < ci.estimate < ci.high
    assert bootstrap_ci(small, primary, seed=0) == ci  # same seed, same interval
    assert bootstrap_ci(small, primary, seed=1) != ci
    wide = bootstrap_ci(large, primary, seed=0)
    assert wide.low < 0.75 < wide.high
    assert (wide.high - wide.low) < 0.5 * (ci.high - ci.low)  # ~1/sqrt(25) of the width
    # the percentile interval of a proportion is close to the normal one: 2 * 1.96 * sqrt(p(1-p)/n)
    assert wide.high - wide.low == pytest.approx(2 * 1.96 * np.sqrt(0.75 * 0.25 / 1000), rel=0.15)


def test_paired_bootstrap():
    primary = {"multiple_choice": "accuracy"}
    a = acc_rows([1, 0, 1, 1, 0, 1, 1, 1] * 5)
    same = paired_bootstrap(a, list(reversed(a)), primary, seed=3)  # joined by uid, not by position
    assert (same.estimate, same.low, same.high, same.n) == (0.0, 0.0, 0.0, 40)
    b = [dict(row, stats={"correct": 0}) if i % 8 == 0 else row for i, row in enumerate(a)]  # B misses 5 more
    diff = paired_bootstrap(a, b, primary, seed=0)
    assert diff.estimate == pytest.approx(5 / 40)
    assert 0 < diff.low <= diff.estimate <= diff.high  # every resample has A >= B
    with pytest.raises(ValueError, match=r"only in A \(1\): \['x39'\], only in B \(1\): \['y0'\]"):
        paired_bootstrap(a, b[:-1] + acc_rows([1], prefix="y"), primary)
    with pytest.raises(ValueError, match="duplicate uids"):
        paired_bootstrap(a, a + a[:1], primary)


def test_paired_mean_bootstrap_averages_tasks_and_seeds_resampling_each_task_on_its_own():
    primary = {"multiple_choice": "accuracy"}
    a = acc_rows([1, 0, 1, 1, 0, 1, 1, 1] * 5)
    b = [dict(row, stats={"correct": 0}) if i % 8 == 0 else row for i, row in enumerate(a)]  # A +5/40
    one = paired_mean_bootstrap([([(a, b)], primary)], seed=0)
    assert one == paired_bootstrap(a, b, primary, seed=0)  # one task, one pair: the paired bootstrap
    ner = {"ner": "f1"}
    x, y = ner_rows([(1, 0, 0)] * 20), ner_rows([(0, 1, 1)] * 20)  # a second task: F1 1.0 vs 0.0
    # two seeds of the first task (differences 5/40 and 0) and the second task (difference 1.0)
    mean = paired_mean_bootstrap([([(a, b), (a, a)], primary), ([(x, y)], ner)], seed=0)
    assert mean.estimate == pytest.approx(((5 / 40 + 0) / 2 + 1.0) / 2) and mean.n == 60
    assert mean.low <= mean.estimate <= mean.high and mean.high - mean.low < one.high - one.low
    with pytest.raises(ValueError, match="every task needs at least one pair"):
        paired_mean_bootstrap([([], primary)])
    with pytest.raises(ValueError, match="only in A"):
        paired_mean_bootstrap([([(a, b[:-1] + acc_rows([1], prefix="y"))], primary)])


def test_errors():
    with pytest.raises(ValueError, match="no metric 'rougeL'"):
        bootstrap_ci(ner_rows([(1, 0, 0)]), {"ner": "rougeL"})
    with pytest.raises(ValueError, match="no primary metric given for kind 'ner'"):
        bootstrap_ci(ner_rows([(1, 0, 0)]), {"re": "f1"})
    with pytest.raises(ValueError, match="no examples"):
        bootstrap_ci([], {"ner": "f1"})


def test_estimate_equals_the_evaluator_score_for_every_kind():
    ev = TaskEvaluator(
        [
            ("ncbi", "ner", ("D",)),
            ("clinifact", "nli", ("evidence", "inconclusive", "no_info")),
            ("mixed", "qa", ()),
            ("meqsum", "summarization", ()),
        ]
    )
    rows = []

    def add(task, prediction, record):
        rows.append({"uid": record.uid, "task": task, **ev.update(task, prediction, record)})

    for i, (pred, gold) in enumerate([((("a", "D"),), (("a", "D"), ("b", "D"))), ((("c", "D"),), ()), ((), ())]):
        ents = tuple(Entity(-1, -1, "D", m) for m, _ in gold)
        add("ncbi", pred, NerRecord(uid=f"n{i}", origin="t", text="t", entities=ents))
    space = ("evidence", "inconclusive", "no_info")
    for i, (pred, gold) in enumerate([("no_info", "no_info"), ("no_info", "evidence"), ("", "inconclusive")]):
        add("clinifact", pred, NliRecord(uid=f"c{i}", origin="t", label=gold, label_space=space))
    add("mixed", "yes", QaRecord(uid="q0", origin="t", answers=("no",), kind="yes_no_maybe"))
    add("mixed", "yes", QaRecord(uid="q1", origin="t", answers=("yes",), kind="yes_no_maybe"))
    add("mixed", "B", QaRecord(uid="q2", origin="t", answers=("B",), options=("A", "B"), kind="multiple_choice"))
    add("mixed", "an aspirin", QaRecord(uid="q3", origin="t", answers=("aspirin", "ASA"), kind="free_text"))
    add("meqsum", "the cat lay on a mat", SummarizationRecord(uid="m0", origin="t", summary="the cat sat on the mat"))
    scores = ev.compute()
    assert scores["clinifact/score"] == scores["clinifact/macro_f1"] != scores["clinifact/accuracy"]
    for task in ("ncbi", "clinifact", "mixed", "meqsum"):
        task_rows = [r for r in rows if r["task"] == task]
        primary = {r["kind"]: ev.primary_metric(task, r["kind"]) for r in task_rows}
        ci = bootstrap_ci(task_rows, primary, n_resamples=200)
        assert ci.estimate == pytest.approx(scores[f"{task}/score"]), task
        assert ci.low <= ci.estimate <= ci.high
