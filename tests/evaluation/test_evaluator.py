import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from metaprompt.evaluation import PRIMARY_OVERRIDES, TaskEvaluator, label_like
from metaprompt.tasks.records import (
    Entity,
    NerRecord,
    NliRecord,
    QaRecord,
    Relation,
    RelationRecord,
    SummarizationRecord,
)
from metaprompt.tasks.verbalizers import get_verbalizer

EI_LABELS = ("no significant difference", "significantly decreased", "significantly increased")
TASKS = [
    ("ncbi_disease", "ner", ("SpecificDisease",)),
    ("cdr", "re", ()),
    ("rqe", "nli", ("false", "true")),
    ("evidence_inference", "nli", EI_LABELS),
    ("pubmedqa", "qa", ()),
    ("head_qa", "qa", ()),
    ("kqa", "qa", ()),
    ("meqsum", "summarization", ()),
    ("never_updated", "ner", ()),
]


def ner(uid, *mentions):
    text = " ".join(mentions)
    ents, pos = [], 0
    for m in mentions:
        ents.append(Entity(pos, pos + len(m), "SpecificDisease", m))
        pos += len(m) + 1
    return NerRecord(uid=uid, origin="test", text=text, entities=tuple(ents))


def nli(uid, label, space):
    return NliRecord(uid=uid, origin="test", premise="p", hypothesis="h", label=label, label_space=space)


def qa(uid, kind, answers, options=None):
    return QaRecord(uid=uid, origin="test", question="q", answers=answers, kind=kind, options=options)


@pytest.fixture
def evaluator():
    return TaskEvaluator(TASKS)


def fill(ev):
    nv = get_verbalizer("ner", ("SpecificDisease",))
    rec = ner("n/0", "colon cancer", "asthma")
    ev.update("ncbi_disease", nv.parse("colon cancer | SpecificDisease\nflu | SpecificDisease", rec), rec)
    rel = RelationRecord(uid="r/0", origin="test", text="a b", relations=(Relation("a", "CID", "b"),))
    ev.update("cdr", (("a", "CID", "b"),), rel)
    ev.update("rqe", "true", nli("q/0", "true", ("false", "true")))
    ev.update("rqe", "", nli("q/1", "false", ("false", "true")))  # unparseable generation
    for pred, gold in [(EI_LABELS[0], EI_LABELS[0]), (EI_LABELS[0], EI_LABELS[1]), (EI_LABELS[2], EI_LABELS[2])]:
        ev.update("evidence_inference", pred, nli("e", gold, EI_LABELS))
    ev.update("pubmedqa", "yes", qa("p/0", "yes_no_maybe", ("yes",)))
    ev.update("pubmedqa", "maybe", qa("p/1", "yes_no_maybe", ("no",)))
    opts = ("Proprioception", "Pain.")
    ev.update("head_qa", "Pain.", qa("h/0", "multiple_choice", ("Pain.",), opts))
    ev.update("kqa", "aspirin", qa("k/0", "free_text", ("acetylsalicylic acid", "Aspirin")))
    summary = SummarizationRecord(uid="m/0", origin="test", source="s", summary="the cat sat on the mat")
    ev.update("meqsum", "the cat lay on a mat", summary)


def test_keys_values_and_scores_by_hand(evaluator):
    fill(evaluator)
    out = evaluator.compute()
    # NER: gold {colon cancer, asthma}, pred {colon cancer, flu}: tp 1, fp 1, fn 1
    assert out["ncbi_disease/precision"] == pytest.approx(0.5)
    assert out["ncbi_disease/f1"] == pytest.approx(0.5) == out["ncbi_disease/score"]
    assert out["cdr/f1"] == 1.0 == out["cdr/score"]
    # rqe: 1 of 2 right; "false" gold missed by "" -> false F1 0, true P1 R1 -> macro .5
    assert out["rqe/accuracy"] == 0.5 == out["rqe/score"]
    assert out["rqe/macro_f1"] == pytest.approx(0.5)
    # evidence_inference: nsd tp1 fp1 -> 2/3; dec fn1 -> 0; inc tp1 -> 1; score is macro-F1
    assert out["evidence_inference/accuracy"] == pytest.approx(2 / 3)
    assert out["evidence_inference/macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert out["evidence_inference/score"] == out["evidence_inference/macro_f1"]
    assert out["pubmedqa/accuracy"] == 0.5 == out["pubmedqa/score"]
    assert "pubmedqa/macro_f1" in out
    assert out["head_qa/accuracy"] == 1.0 == out["head_qa/score"]
    assert out["kqa/exact_match"] == 1.0 and out["kqa/token_f1"] == 1.0  # matches the 2nd answer
    assert out["kqa/score"] == out["kqa/rougeL"] == 1.0
    assert out["meqsum/rouge1"] == pytest.approx(4 / 6) and out["meqsum/rouge2"] == pytest.approx(1 / 5)
    assert out["meqsum/score"] == pytest.approx(4 / 6)
    scores = [v for k, v in out.items() if k.endswith("/score") and not k.startswith("macro/")]
    assert len(scores) == 8
    assert out["macro/score"] == pytest.approx(sum(scores) / 8)
    assert not any(k.startswith("never_updated/") for k in out)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in out.values())
    assert set(k.split("/", 1)[1] for k in out if k.startswith("kqa/")) == {
        "rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "score"
    }  # fmt: skip


def test_reset_empties_and_absent_tasks_stay_out(evaluator):
    assert evaluator.compute() == {}
    fill(evaluator)
    evaluator.reset()
    assert evaluator.compute() == {}
    evaluator.update("rqe", "true", nli("q/0", "true", ("false", "true")))
    assert evaluator.compute() == {"rqe/accuracy": 1.0, "rqe/macro_f1": 1.0, "rqe/score": 1.0, "macro/score": 1.0}


def test_qa_task_with_mixed_kinds_gets_qualified_keys():
    ev = TaskEvaluator([("mixed", "qa", ())])
    ev.update("mixed", "yes", qa("x/0", "yes_no_maybe", ("yes",)))
    ev.update("mixed", "B", qa("x/1", "multiple_choice", ("A",), ("A", "B")))
    out = ev.compute()
    assert out["mixed/yes_no_maybe/accuracy"] == 1.0 and out["mixed/multiple_choice/accuracy"] == 0.0
    assert out["mixed/score"] == 0.5 == out["macro/score"]


def test_primary_overrides_and_dotted_names():
    assert PRIMARY_OVERRIDES["evidence_inference"] == "macro_f1"
    ev = TaskEvaluator([("my.nli", "nli", ("a", "b"))], primary_overrides={"my.nli": "macro_f1"})
    ev.update("my.nli", "a", nli("0", "a", ("a", "b")))
    ev.update("my.nli", "a", nli("1", "b", ("a", "b")))
    out = ev.compute()
    assert out["my.nli/accuracy"] == 0.5
    assert out["my.nli/score"] == out["my.nli/macro_f1"] == pytest.approx(1 / 3)  # a: P.5 R1; b: 0
    with pytest.raises(ValueError, match="no metric 'rougeL'"):
        TaskEvaluator([("x", "ner", ())], primary_overrides={"x": "rougeL"})


def test_construction_and_update_errors(evaluator):
    with pytest.raises(ValueError, match="NLI needs its label space"):
        TaskEvaluator([("rqe", "nli", ())])
    with pytest.raises(ValueError, match="task_type 'cls'"):
        TaskEvaluator([("x", "cls", ())])
    with pytest.raises(ValueError, match="given twice"):
        TaskEvaluator([("x", "ner", ()), ("x", "re", ())])
    with pytest.raises(ValueError, match="reserved"):
        TaskEvaluator([("macro", "ner", ())])
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        evaluator.update("nope", (), ner("n/0", "x"))
    with pytest.raises(ValueError, match="is 'ner' but record 'q/0' is 'nli'"):
        evaluator.update("ncbi_disease", "true", nli("q/0", "true", ("false", "true")))
    with pytest.raises(ValueError, match="not one of the labels"):
        evaluator.update("rqe", "true", nli("q/0", "maybe", ("maybe",)))


def test_metrics_are_registered_submodules_with_sum_states(evaluator):
    metrics = [m for m in evaluator.modules() if hasattr(m, "_reductions")]
    assert len(metrics) == 6 + 3 * 3  # one per non-QA task, three per QA task
    assert all(r is dim_zero_sum for m in metrics for r in m._reductions.values())
    evaluator.to(torch.bfloat16)  # a bf16-true precision plugin does this to the whole module
    fill(evaluator)
    assert evaluator.compute()["meqsum/rouge1"] == pytest.approx(4 / 6)


def test_primary_metrics_of_the_targets_follow_the_manifest():
    """clinifact: macro-F1 (3 skewed classes); pubmedqa: accuracy (its leaderboard), macro-F1 reported too."""
    assert PRIMARY_OVERRIDES["clinifact"] == "macro_f1" and "pubmedqa" not in PRIMARY_OVERRIDES
    space = ("evidence", "inconclusive", "no_info")
    ev = TaskEvaluator([("clinifact", "nli", space), ("pubmedqa", "qa", ())])
    for i, gold in enumerate(["no_info", "no_info", "evidence", "inconclusive"]):  # always "no_info"
        ev.update("clinifact", "no_info", nli(f"c/{i}", gold, space))
        ev.update("pubmedqa", "yes", qa(f"p/{i}", "yes_no_maybe", ("yes" if i < 2 else "no",)))
    out = ev.compute()
    assert out["clinifact/accuracy"] == 0.5 and out["clinifact/score"] == pytest.approx(2 / 3 / 3)
    assert out["pubmedqa/score"] == out["pubmedqa/accuracy"] == 0.5 and "pubmedqa/macro_f1" in out
    assert ev.primary_metric("clinifact", "nli") == "macro_f1"
    assert ev.primary_metric("pubmedqa", "yes_no_maybe") == "accuracy"


def test_update_returns_kind_and_example_stats(evaluator):
    rec = ner("n/0", "colon cancer", "asthma")
    assert evaluator.update("ncbi_disease", (("colon cancer", "SpecificDisease"), ("x", "SpecificDisease")), rec) == {
        "kind": "ner",
        "stats": {"tp": 1, "fp": 1, "fn": 1},
    }
    assert evaluator.update("rqe", "maybe?", nli("q/0", "true", ("false", "true")))["stats"] == {
        "gold": "true",
        "pred": None,  # outside the label list: counts as no class
        "correct": 0,
    }
    opts = ("Proprioception", "Pain.")
    out = evaluator.update("head_qa", "Pain.", qa("h/0", "multiple_choice", ("Pain.",), opts))
    assert out == {"kind": "multiple_choice", "stats": {"correct": 1}}
    out = evaluator.update("kqa", "aspirin", qa("k/0", "free_text", ("acetylsalicylic acid", "Aspirin")))
    assert out["kind"] == "free_text" and out["stats"]["exact_match"] == 1.0 and set(out["stats"]) == {
        "rouge1", "rouge2", "rougeL", "exact_match", "token_f1"
    }  # fmt: skip


def test_label_like_records():
    assert label_like(nli("0", "a", ("a", "b"))) and not label_like(nli("0", "a", ()))
    assert label_like(qa("0", "yes_no_maybe", ("yes",)))
    assert label_like(qa("0", "multiple_choice", ("A",), ("A", "B")))
    assert not label_like(qa("0", "multiple_choice", ("A",)))  # no options: nothing to rank
    assert not label_like(qa("0", "free_text", ("A",))) and not label_like(ner("0", "x"))
