"""Verbalizers: exact formats, noisy parsing, fuzzing (no exceptions) and round-trip on tricky records."""

from __future__ import annotations

import random

import pytest

from metaprompt.tasks.records import (
    Entity,
    NerRecord,
    NliRecord,
    QaRecord,
    Relation,
    RelationRecord,
    SummarizationRecord,
)
from metaprompt.tasks.verbalizers import (
    VERBALIZERS,
    escape_field,
    get_verbalizer,
    label_set,
    unescape_field,
)
from metaprompt.tasks.verbalizers.base import split_fields


def ner(text: str, *ents: tuple[int, int, str]) -> NerRecord:
    return NerRecord("d/train/0", "f:1", text=text, entities=tuple(Entity(s, e, lab, text[s:e]) for s, e, lab in ents))


def rel(text: str, *triples: tuple[str, str, str]) -> RelationRecord:
    return RelationRecord("d/train/0", "f:1", text=text, relations=tuple(Relation(*t) for t in triples))


MC = QaRecord(
    "q/test/1",
    "f:2",
    question="Which drug?",
    options=("E. coli", "Aspirin", "Ibuprofen (oral)"),
    answers=("Ibuprofen (oral)",),
    kind="multiple_choice",
)
YNM = QaRecord("q/test/2", "f:3", question="Is it?", context="Some context.", answers=("maybe",), kind="yes_no_maybe")
FREE = QaRecord("q/test/3", "f:4", question="What is X?", answers=("X is a thing.",), kind="free_text")
NLI = NliRecord(
    "n/test/1",
    "f:5",
    premise="P.",
    hypothesis="H.",
    label="no significant difference",
    label_space=("no significant difference", "significantly decreased", "significantly increased"),
)
SUM = SummarizationRecord("s/test/1", "f:6", source="Long text.", summary="Short.")


# ---------------------------------------------------------------- exact formats


def test_ner_format_order_of_appearance_and_none():
    r = ner("Aspirin reduces MI risk; aspirin.", (16, 18, "Disease"), (0, 7, "Chemical"), (25, 32, "Chemical"))
    v = get_verbalizer("ner", ["Chemical", "Disease"])
    assert v.target(r) == "Aspirin | Chemical\nMI | Disease\naspirin | Chemical"
    p = v.prompt(r)
    assert "Entity types: Chemical, Disease" in p and "Text: Aspirin reduces MI risk; aspirin." in p
    assert p.endswith("Answer:") and "MI | Disease" not in p
    assert v.target(ner("Nothing here.")) == "None"
    assert v.parse("None") == ()


def test_re_format_reading_order_and_dedup():
    r = rel(
        "BRCA1 binds BARD1; cisplatin causes nephrotoxicity.",
        ("cisplatin", "CID", "nephrotoxicity"),
        ("BRCA1", "PPI", "BARD1"),
        ("BRCA1", "PPI", "BARD1"),
    )
    v = get_verbalizer("re", ["CID", "PPI"])
    assert v.target(r) == "BRCA1 | PPI | BARD1\ncisplatin | CID | nephrotoxicity"
    assert "Relation types: CID, PPI" in v.prompt(r)
    assert v.target(rel("No relation.")) == "None" and v.parse("None") == ()


def test_re_candidate_pair_prompt_names_its_pair_and_asks_yes_or_no():
    # pgr rows mention several genes/phenotypes and are labelled for one pair: the prompt must say which
    pair = Relation("UROC1", "associated_with", "ataxia")
    text = "UROC1 mutations in a girl with aciduria, retardation and ataxia."
    pos = RelationRecord("pgr/train/1", "f:1", text=text, relations=(pair,), candidate=pair)
    neg = RelationRecord("pgr/train/2", "f:2", text=text, relations=(), candidate=pair)
    v = get_verbalizer("re", ["associated_with"])
    assert v.prompt(pos) == v.prompt(neg)  # the prompt never gives the answer away
    assert "Candidate: UROC1 | associated_with | ataxia\n\nAnswer:" in v.prompt(pos)
    assert v.target(pos) == "yes" and v.target(neg) == "no"  # a one-token decision, not a copied triple
    assert v.parse("yes", pos) == v.parse("Yes.", neg) == (("UROC1", "associated_with", "ataxia"),)
    assert v.parse("no", pos) == v.parse("None", pos) == ()
    assert v.parse("UROC1 | associated_with | ataxia", neg) == (("UROC1", "associated_with", "ataxia"),)
    assert "Candidate:" not in v.prompt(rel(text, ("UROC1", "associated_with", "ataxia")))  # open RE
    custom = get_verbalizer("re", ["associated_with"], instruction="Classify the pair.")
    assert custom.prompt(pos).startswith("Classify the pair.")


def test_qa_formats():
    v = get_verbalizer("qa")
    assert v.target(MC) == "C. Ibuprofen (oral)"
    assert "Options:\nA. E. coli\nB. Aspirin\nC. Ibuprofen (oral)" in v.prompt(MC)
    assert "Ibuprofen (oral)\n\nAnswer:" in v.prompt(MC)  # options listed, answer not given away
    assert (
        v.target(YNM) == "maybe" and "yes, no or maybe" in v.prompt(YNM) and "Context: Some context." in v.prompt(YNM)
    )
    assert v.target(FREE) == "X is a thing." and "X is a thing" not in v.prompt(FREE)


def test_nli_and_summarization_formats():
    v = get_verbalizer("nli")
    assert v.target(NLI) == "no significant difference"
    p = v.prompt(NLI)
    assert "Labels: no significant difference, significantly decreased, significantly increased" in p
    assert "Premise: P.\n\nHypothesis: H.\n\nAnswer:" in p
    s = get_verbalizer("summarization")
    assert (
        s.target(SUM) == "Short." and s.prompt(SUM) == "Summarize the following text.\n\nText: Long text.\n\nSummary:"
    )


def test_custom_instruction_and_registry():
    v = get_verbalizer("summarization", instruction="Write the question briefly.")
    assert v.prompt(SUM).startswith("Write the question briefly.\n\nText:")
    assert set(VERBALIZERS) == {"ner", "re", "qa", "nli", "summarization"}
    with pytest.raises(KeyError):
        get_verbalizer("pos")
    with pytest.raises(TypeError):
        get_verbalizer("ner").target(SUM)


def test_label_set_from_records():
    recs = [ner("a b", (0, 1, "X")), ner("c d", (2, 3, "A"), (0, 1, "X"))]
    assert label_set(recs) == ("A", "X")
    assert label_set([rel("t", ("a", "R2", "b")), rel("t", ("a", "R1", "b"))]) == ("R1", "R2")
    assert label_set([NLI]) == NLI.label_space


# ---------------------------------------------------------------- noisy parsing


def test_ner_parse_noisy():
    v = get_verbalizer("ner", ["Chemical", "Disease_or_syndrome"])
    out = v.parse("  aspirin |chemical \n\nMI|disease or syndrome\r\nblah blah\n | Chemical\nfoo | \nx | Weird")
    assert out == (("MI", "Disease_or_syndrome"), ("aspirin", "Chemical"), ("x", "Weird"))
    assert v.parse("a | b | Chemical") == (("a | b", "Chemical"),)  # unescaped pipe: last field is the type
    assert v.parse("aspirin | Chem") == (("aspirin", "Chem"),)  # unknown type kept: a false positive
    assert v.parse("aspirin | Chemical\naspirin | Chemical") == (("aspirin", "Chemical"),) * 2  # multiset


def test_re_parse_noisy():
    v = get_verbalizer("re", ["CID", "Has_value"])
    assert v.parse("a|cid|b\nc | has value | d\njunk\na | b") == (("a", "CID", "b"), ("c", "Has_value", "d"))
    assert v.parse("x | y | CID | z") == (("x | y", "CID", "z"),)  # known relation anchors the split
    assert v.parse("x | y | z | w") == (("x", "y", "z | w"),)
    assert v.parse("a | CID | b\na | CID | b") == (("a", "CID", "b"),)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("C", "Ibuprofen (oral)"),
        ("c)", "Ibuprofen (oral)"),
        ("(C)", "Ibuprofen (oral)"),
        ("C. ibuprofen  (ORAL)", "Ibuprofen (oral)"),
        ("Ibuprofen (oral)", "Ibuprofen (oral)"),
        ("Answer: B", "Aspirin"),
        ("The answer is B. Aspirin", "Aspirin"),
        ("aspirin.", "Aspirin"),
        ("E. coli", "E. coli"),  # option text that looks like a letter prefix
        ("B. Ibuprofen (oral)", "Ibuprofen (oral)"),  # text naming another option wins over the letter
        ("B\nbecause it is an NSAID", "Aspirin"),
        ("Aspirin, since it inhibits COX", "Aspirin"),
        ("D", ""),
        ("zzz", ""),
        ("", ""),
        ("   ", ""),
    ],
)
def test_qa_multiple_choice_parse(text, expected):
    assert get_verbalizer("qa").parse(text, MC) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("maybe", "maybe"),
        ("Yes.", "yes"),
        (" NO ", "no"),
        ("Yes, because...", "yes"),
        ("Answer: no", "no"),
        ("noted", ""),
        ("perhaps", ""),
        ("", ""),
    ],
)
def test_qa_yes_no_maybe_parse(text, expected):
    assert get_verbalizer("qa").parse(text, YNM) == expected


def test_qa_free_text_parse():
    v = get_verbalizer("qa")
    assert v.parse("  X is a thing.\n", FREE) == "X is a thing."
    assert v.parse("anything", None) == "anything"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("No significant difference", "no significant difference"),
        ("no_significant_difference.", "no significant difference"),
        ("Significantly-Increased", "significantly increased"),
        ("significantly increased, as the premise shows", "significantly increased"),
        ("Answer: significantly decreased", "significantly decreased"),
        ("significantly", ""),  # ambiguous prefix
        ("no significant", "no significant difference"),  # unique prefix
        ("entailment", ""),
        ("", ""),
    ],
)
def test_nli_parse(text, expected):
    assert get_verbalizer("nli").parse(text, NLI) == expected


def test_nli_uses_constructor_labels_without_label_space():
    v = get_verbalizer("nli", ["Entailment", "Neutral", "Contradiction"])
    r = NliRecord("n/t/2", "f:1", premise="p", hypothesis="h", label="Neutral")
    assert "Labels: Entailment, Neutral, Contradiction" in v.prompt(r)
    assert v.parse("neutral", r) == "Neutral" and v.parse("entail") == "Entailment"
    assert get_verbalizer("nli").parse("Neutral") == ""  # no label space known


# ---------------------------------------------------------------- round trip on tricky records


TRICKY = "A|B; (x)\ttab\nnew\\line ünïcødé 中文 None | Type"


def test_escape_roundtrip_and_split():
    for s in ["", "a|b", "\\", "\\n", "a\\|b", "x\ny\r\nz", TRICKY, "|||", "\\\\|"]:
        assert unescape_field(escape_field(s)) == s
        assert split_fields(escape_field(s) + " | T") == [s.strip(), "T"]


@pytest.mark.parametrize(
    "record",
    [
        ner(
            TRICKY,
            *[
                (TRICKY.index(m), TRICKY.index(m) + len(m), lab)
                for m, lab in [
                    ("A|B", "Chemical"),
                    ("A|B;", "Disease"),
                    ("(x)\ttab\nnew\\line", "Chemical"),
                    ("ünïcødé", "Disease"),
                    ("中文", "Chemical"),
                    ("None | Type", "Disease"),
                    ("None", "Type"),
                    ("A|B", "Chemical"),
                ]
            ],
        ),
        ner("no entities"),
        ner("None | Type", (0, 4, "Type")),
        ner("aspirin aspirin", (0, 7, "Chemical"), (8, 15, "Chemical")),
        NerRecord(
            "d/t/9",
            "f:9",
            text="?",
            entities=(Entity(-1, -1, "Chemical", "x\\y"), Entity(0, 1, "Chemical", "?")),
        ),
        rel(
            TRICKY,
            ("A|B", "Has_value", "new\\line"),
            ("(x)\ttab", "OR", "ünïcødé 中文"),
            ("None", "AND", "Type"),
        ),
        rel("nothing"),
        rel("a | CID | b", ("a | CID", "CID", "b"), ("a", "CID", "CID | b")),
        MC,
        YNM,
        FREE,
        NLI,
        SUM,
        QaRecord(
            "q/t/4",
            "f:1",
            question="Q",
            options=tuple(f"opt {i}" for i in range(30)),
            answers=("opt 28",),
            kind="multiple_choice",
        ),
        QaRecord(
            "q/t/5",
            "f:1",
            question="Q",
            options=("B", "A", "A. b"),
            answers=("A. b",),
            kind="multiple_choice",
        ),
    ],
    ids=lambda r: r.uid,
)
def test_roundtrip_tricky(record):
    labels = ["Chemical", "Disease", "Type", "Has_value", "OR", "AND", "CID"]
    v = get_verbalizer(record.task_type, labels)
    assert v.roundtrip_ok(record), (v.target(record), v.parse(v.target(record), record), record.structure())


# ---------------------------------------------------------------- fuzz: parsers never raise


ALPHABET = list("abcXYZ |\\\n\r\t;:.,()[]-_'\"") + [
    "None",
    "A.",
    "(B)",
    "yes",
    "Answer:",
    "ü",
    "中",
    "\u2028",
    "\x00",
]


@pytest.mark.parametrize("task_type", ["ner", "re", "qa", "nli", "summarization"])
def test_fuzz_parsers_never_raise(task_type):
    rng = random.Random(f"fuzz:{task_type}")
    v = get_verbalizer(task_type, ["Chemical", "CID", "Entailment"])
    records = {
        "ner": [None],
        "re": [None],
        "qa": [None, MC, YNM, FREE],
        "nli": [None, NLI],
        "summarization": [None, SUM],
    }
    for _ in range(400):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
        for r in records[task_type]:
            out = v.parse(text, r)
            assert isinstance(out, (tuple, str))
    for r in records[task_type]:
        assert v.parse("x | " * 20000, r) is not None  # long output: linear time, no error
        assert v.parse(None, r) in ((), "")  # type: ignore[arg-type]
