import warnings

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from metaprompt.evaluation.metrics import (
    LabelAccuracyF1,
    MatchAccuracy,
    SetF1,
    TextOverlap,
    exact_match,
    normalize_answer,
    token_f1,
)


def values(metric):
    return {k: v.item() for k, v in metric.compute().items()}


def test_set_f1_counts_by_hand():
    m = SetF1()
    # example 1: gold {aspirin/Chem, fever/Dis}; pred {aspirin/Chem, cough/Dis} -> tp 1, fp 1, fn 1
    # example 2: gold {}; pred {x/Chem} -> fp 1.  example 3: gold {y/Dis}; pred {} -> fn 1
    m.update(
        [[("aspirin", "Chem"), ("cough", "Dis")], [("x", "Chem")], []],
        [[("aspirin", "Chem"), ("fever", "Dis")], [], [("y", "Dis")]],
    )
    assert (m.tp.item(), m.fp.item(), m.fn.item()) == (1, 2, 2)
    v = values(m)
    assert v["precision"] == pytest.approx(1 / 3)
    assert v["recall"] == pytest.approx(1 / 3)
    assert v["f1"] == pytest.approx(1 / 3)
    assert v["count"] == 3


def test_set_f1_is_multiset_and_type_strict():
    m = SetF1()
    # gold has "pain" twice; pred three times -> 2 tp, 1 fp; wrong type on "fever" -> 1 fp + 1 fn
    m.update(
        [[("pain", "Dis"), ("pain", "Dis"), ("pain", "Dis"), ("fever", "Chem")]],
        [[("pain", "Dis"), ("pain", "Dis"), ("fever", "Dis")]],
    )
    assert (m.tp.item(), m.fp.item(), m.fn.item()) == (2, 2, 1)
    assert values(m)["f1"] == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))


def test_set_f1_relation_triples_and_nothing_at_all():
    m = SetF1()
    m.update([[("a", "CID", "b")]], [[("a", "CID", "b"), ("b", "CID", "a")]])
    assert values(m) == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "count": 1})
    empty = SetF1()
    empty.update([[]], [[]])  # no gold, no prediction: 0/0 -> 0, not NaN
    assert values(empty) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "count": 1}


def test_set_f1_rejects_bad_input():
    with pytest.raises(TypeError, match="string"):
        SetF1().update(["aspirin | Chem"], [[("aspirin", "Chem")]])
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        SetF1().update([[], []], [[]])


def test_label_accuracy_macro_f1_by_hand():
    m = LabelAccuracyF1(("a", "b", "c", "d"))
    m.update(["a", "b", "b", ""], ["a", "a", "b", "c"])
    # a: tp1 fn1 -> P1 R.5 F 2/3; b: tp1 fp1 -> P.5 R1 F 2/3; c: fn1 (unparseable "") -> F0; d never seen
    assert m.tp.tolist() == [1, 1, 0, 0] and m.fp.tolist() == [0, 1, 0, 0] and m.fn.tolist() == [1, 0, 1, 0]
    v = values(m)
    assert v["accuracy"] == pytest.approx(0.5)
    assert v["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert v["count"] == 4


def test_label_accuracy_out_of_list_prediction_is_wrong_not_a_class():
    m = LabelAccuracyF1(("yes", "no"))
    m.update(["maybe", "yes"], ["yes", "yes"])
    assert m.fp.tolist() == [0, 0] and m.fn.tolist() == [1, 0]
    v = values(m)
    assert v["accuracy"] == pytest.approx(0.5)
    assert v["macro_f1"] == pytest.approx(2 / 3)  # only "yes" seen: P 1, R .5


def test_label_accuracy_rejects_bad_labels():
    with pytest.raises(ValueError, match="non-empty and unique"):
        LabelAccuracyF1(())
    with pytest.raises(ValueError, match="non-empty and unique"):
        LabelAccuracyF1(("a", "a"))
    with pytest.raises(ValueError, match="'z' is not one of the labels"):
        LabelAccuracyF1(("a",)).update(["a"], ["z"])


def test_match_accuracy():
    m = MatchAccuracy()
    m.update(["Pain.", "", "Temperature."], ["Pain.", "Proprioception", "Pain."])
    assert values(m) == pytest.approx({"accuracy": 1 / 3, "count": 3})


def test_squad_normalisation_em_and_token_f1():
    assert normalize_answer("  The Cat, sat!  on a MAT. ") == "cat sat on mat"
    assert exact_match("the metformin.", "Metformin") == 1.0
    assert exact_match("metformin 500", "metformin") == 0.0
    # "cat lay on mat" vs "cat sat on mat": 3 common of 4 and 4
    assert token_f1("the cat lay on a mat", "the cat sat on the mat") == pytest.approx(0.75)
    assert token_f1("", "metformin") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to no tokens
    assert token_f1("insulin", "metformin") == 0.0


def test_text_overlap_known_rouge_values():
    m = TextOverlap()
    m.update(["the cat lay on a mat"], ["the cat sat on the mat"])
    v = values(m)
    # unigrams: the, cat, on, mat shared -> 4/6; bigrams: only "the cat" -> 1/5; LCS "the cat on mat" -> 4/6
    assert v["rouge1"] == pytest.approx(4 / 6)
    assert v["rouge2"] == pytest.approx(1 / 5)
    assert v["rougeL"] == pytest.approx(4 / 6)
    assert v["exact_match"] == 0.0 and v["token_f1"] == pytest.approx(0.75)


def test_text_overlap_stemming_multiple_references_and_empty_prediction():
    m = TextOverlap()
    m.update(["patients running"], ["patient runs"])  # Porter stemmer: offline, no nltk data needed
    assert values(m)["rouge1"] == pytest.approx(1.0)
    multi = TextOverlap()
    multi.update(["aspirin"], [("acetylsalicylic acid", "Aspirin")])  # best reference per score
    assert values(multi) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 0.0, "rougeL": 1.0, "exact_match": 1.0, "token_f1": 1.0, "count": 1}
    )
    empty = TextOverlap()
    empty.update([""], ["a summary"])
    assert all(v == 0.0 for k, v in values(empty).items() if k != "count")
    with pytest.raises(ValueError, match="reference"):
        TextOverlap().update(["x"], [()])


def test_compute_after_reset_is_zero():
    m = SetF1()
    m.update([[("a", "X")]], [[("a", "X")]])
    assert values(m)["f1"] == 1.0
    m.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert values(m) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "count": 0}
    t = TextOverlap()
    t.update(["x"], ["x"])
    t.reset()
    t.update(["a b"], ["c d"])
    assert values(t)["rouge1"] == 0.0 and values(t)["count"] == 1


METRICS = [SetF1, lambda: LabelAccuracyF1(("a", "b", "c")), MatchAccuracy, TextOverlap]
BATCHES = {
    SetF1: ([[("a", "X")], [("b", "Y"), ("b", "Y")], [], [("c", "X")]], [[("a", "X")], [("b", "Y")], [("d", "X")], []]),
    LabelAccuracyF1: (["a", "b", "", "c"], ["a", "c", "b", "c"]),
    MatchAccuracy: (["x", "y", "", "z"], ["x", "z", "y", "z"]),
    TextOverlap: (["the cat sat", "", "a b c", "fever"], ["the cat sat down", "x", "a c b", "high fever"]),
}


@pytest.mark.parametrize("make", METRICS)
def test_every_state_is_a_sum_reduced_tensor(make):
    m = make()
    assert m._defaults, "metric has no states"
    for name in m._defaults:
        assert isinstance(getattr(m, name), torch.Tensor), name
        assert m._reductions[name] is dim_zero_sum, name


@pytest.mark.parametrize("make", METRICS)
def test_two_halves_summed_equal_the_whole(make):
    whole, first, second = make(), make(), make()
    preds, targets = BATCHES[type(whole)]
    whole.update(preds, targets)
    first.update(preds[:2], targets[:2])
    second.update(preds[2:], targets[2:])
    summed = {name: getattr(first, name) + getattr(second, name) for name in whole._defaults}
    for name, value in summed.items():
        torch.testing.assert_close(value, getattr(whole, name))
    first.merge_state(second)  # what a DDP sum-sync does to the states
    expected = whole.compute()
    merged = first.compute()
    assert expected["count"].item() == 4
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value)


def test_states_keep_their_dtype_under_module_casts():
    parent = torch.nn.ModuleDict({"text": TextOverlap(), "sets": SetF1()})
    parent.to(torch.bfloat16)
    parent.half()
    assert parent["text"].rouge1.dtype == torch.float64 and parent["text"].count.dtype == torch.long
    assert parent["sets"].tp.dtype == torch.long
    parent["text"].update(["a b"], ["a b"])
    parent["text"].reset()
    assert parent["text"].rouge1.dtype == torch.float64  # the reset default kept its dtype too
