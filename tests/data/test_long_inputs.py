"""Windows and head+tail cuts of long records (``metaprompt.data.long_inputs``), on the real tokenizer."""

from __future__ import annotations

import pytest

from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.long_inputs import HEAD_TAIL_MARKER, head_tail, serve, window_spans, windows
from metaprompt.data.spans import gold_items
from metaprompt.tasks.records import Entity, NerRecord, QaRecord, Relation, RelationRecord, SummarizationRecord
from metaprompt.tasks.verbalizers import get_verbalizer

FILLER = "The ward round found nothing of note today. "


def ner_record(uid: str = "doc/0", mentions=("aspirin", "heparin", "warfarin", "insulin")) -> NerRecord:
    """A long note with one drug mention after every 12 filler sentences (unique mentions)."""
    text, entities = "", []
    for mention in mentions:
        text += FILLER * 12
        entities.append(Entity(len(text), len(text) + len(mention), "Drug", mention))
        text += mention + ". "
    return NerRecord(uid=uid, origin="notes.jsonl:1", text=text + FILLER * 3, entities=tuple(entities))


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return PromptEncoder(tokenizer, max_length=128, min_prompt_tokens=16)


def test_window_spans_overlap_by_stride_and_cover_the_text():
    offsets = [(i, i + 1) for i in range(10)]  # one character per token
    assert window_spans(offsets, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_spans(offsets, 4, 3) == [(i, i + 4) for i in range(7)]
    assert window_spans(offsets, 4, 0) == [(0, 4), (4, 8), (6, 10)]  # the last window ends with the text
    assert window_spans(offsets, 20, 5) == [(0, 10)]
    with pytest.raises(ValueError, match="cannot overlap"):
        window_spans(offsets, 4, 4)


def test_ner_windows_are_substrings_with_shifted_entities(tokenizer, encoder):
    record = ner_record()
    verbalizer = get_verbalizer("ner", ["Drug"])
    served = windows("notes", "test", [record], verbalizer, encoder, stride=16, size=64)
    assert len(served.records) == len(served.windows) > 2
    seen = []
    for k, window in enumerate(served.records):
        where = served.windows[window.uid]
        assert window.uid == f"doc/0#w{k}" and (where.parent, where.index) == ("doc/0", k)
        assert window.text == record.text[where.start : where.start + len(window.text)]
        assert all(window.text[e.start : e.end] == e.text for e in window.entities)
        seen += [e.text for e in window.entities]
    assert set(seen) == {e.text for e in record.entities}  # every entity lies whole in some window
    for left, right in zip(served.records, served.records[1:]):  # consecutive windows share >= stride tokens
        a, b = served.windows[left.uid].start, served.windows[right.uid].start
        shared = record.text[b : a + len(left.text)]
        assert len(tokenizer(shared, add_special_tokens=False)["input_ids"]) >= 16


def test_train_keeps_windows_with_gold_and_test_keeps_all(encoder):
    verbalizer = get_verbalizer("ner", ["Drug"])
    empty = NerRecord(uid="doc/1", origin="notes.jsonl:2", text=FILLER * 40)
    short = NerRecord(uid="doc/2", origin="notes.jsonl:3", text="Aspirin.", entities=(Entity(0, 7, "Drug", "Aspirin"),))
    records = [ner_record(), empty, short]
    train = windows("notes", "train", records, verbalizer, encoder, stride=16, size=64)
    test = windows("notes", "test", records, verbalizer, encoder, stride=16, size=64)

    def parents(served):
        return [served.windows[r.uid].parent if r.uid in served.windows else r.uid for r in served.records]

    assert parents(train).count("doc/0") < parents(test).count("doc/0")
    assert all(gold_items(r)[1] for r in train.records if r.uid.startswith("doc/0#"))
    assert [r.uid for r in train.records if r.uid.startswith("doc/1")] == ["doc/1#w0"]  # no gold: its first window
    assert train.records[-1] is short and test.records[-1] is short  # fits one window: served whole


def test_qa_and_re_windows_keep_only_what_they_hold(encoder):
    context = FILLER * 20 + "The drug given was remdesivir. " + FILLER * 20
    qa = QaRecord(uid="q/0", origin="covid.json#0", question="Which drug?", context=context, answers=("remdesivir",))
    served = windows("covid", "train", [qa], get_verbalizer("qa"), encoder, stride=24, size=None)
    assert served.records and all("remdesivir" in w.context for w in served.records)
    assert all(w.answers == ("remdesivir",) and w.context in context for w in served.records)
    # the derived window fills the budget: no window's prompt is cut again by the encoder
    rows = encoder.encode_batch(
        [get_verbalizer("qa").prompt(w) for w in served.records], ["remdesivir"] * len(served.records)
    )
    assert all(e.truncated == 0 for e in rows)
    text = FILLER * 10 + "BRCA1 binds BARD1. " + FILLER * 30 + "TP53 binds MDM2. "
    re_record = RelationRecord(
        uid="r/0",
        origin="re.jsonl:1",
        text=text,
        relations=(Relation("BRCA1", "binds", "BARD1"), Relation("TP53", "binds", "MDM2")),
    )
    test = windows("ppi", "test", [re_record], get_verbalizer("re", ["binds"]), encoder, stride=8, size=48)
    for w in test.records:
        assert all(r.head in w.text and r.tail in w.text for r in w.relations)
    assert {r for w in test.records for r in w.relations} == set(re_record.relations)


def test_a_window_that_cannot_exceed_the_stride_is_an_error(encoder):
    long = QaRecord(uid="q/1", origin="covid.json#1", question="Which? " * 30, context=FILLER * 40, answers=("x",))
    with pytest.raises(ValueError, match=r"'q/1'.*not more than long_inputs.stride \(64\)"):
        windows("covid", "train", [long], get_verbalizer("qa"), encoder, stride=64, size=None)


def test_head_tail_keeps_both_ends_with_a_marker(tokenizer, encoder):
    source = "START " + FILLER * 30 + "END OF DIALOGUE"
    record = SummarizationRecord(uid="s/0", origin="dialog.csv:2", source=source, summary="Nothing found.")
    short = SummarizationRecord(uid="s/1", origin="dialog.csv:3", source="Short.", summary="Short.")
    served = head_tail([record, short], encoder, head=10, tail=6, marker=HEAD_TAIL_MARKER)
    cut, same = served.records
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    head, _, tail = cut.source.partition(HEAD_TAIL_MARKER)
    assert head == tokenizer.decode(ids[:10]) and tail == tokenizer.decode(ids[-6:])
    assert cut.source.startswith("START") and cut.source.endswith("END OF DIALOGUE")
    assert cut.summary == record.summary and cut.uid == record.uid and same is short
    assert served.elided == {"s/0": len(ids) - 16}
    only_tail = serve("d", "test", [record], {"mode": "head_tail", "head": 0, "tail": 4, "marker": ""}, None, encoder)
    assert only_tail.records[0].source == tokenizer.decode(ids[-4:])


# ------------------------------------------------------------------ through a data module
DEFAULT_FINGERPRINT = "8309e5f7d2fce26fc96c770907b3f170a91357eaa9c31b94b7086e6156294a26"
"""``fingerprint()`` of the setting below as computed before ``long_inputs`` existed: committed run
records key on it, so tasks that do not declare ``long_inputs`` must keep it."""


def data(tasks, tmp_path, **kw):
    from metaprompt.data import MultitaskDataModule

    kw = {"backbone": "tiny-llama", "max_length": 256, "k_shot": 16, "max_eval_per_task": 4, **kw}
    return MultitaskDataModule(tasks=tasks, batch_size=2, cache_dir=str(tmp_path), **kw)


def test_without_long_inputs_the_fingerprint_is_unchanged(data_root, tmp_path):
    assert data("gad,ncbi_disease", tmp_path).fingerprint() == DEFAULT_FINGERPRINT
    windowed = [{"name": "ncbi_disease", "long_inputs": {"mode": "window", "stride": 32}}]
    assert data(windowed, tmp_path).fingerprint() != data("ncbi_disease", tmp_path).fingerprint()


def test_a_windowed_qa_task_trains_on_answer_windows_and_tests_on_all(tmp_path):
    from support.long_docs import write_squad

    files = write_squad(tmp_path, {"train": 6, "test": 3})
    task = {"name": "covid_qa", "task_type": "qa", "format": "squad", "data_files": files}
    plain = data([task], tmp_path / "plain", max_length=128, k_shot="all", max_eval_per_task=None)
    with pytest.warns(UserWarning, match=r"covid_qa: truncation at max_length=128 cuts gold spans"):
        plain.setup("fit")  # the default cut loses answers: said
    windowed = [{**task, "long_inputs": {"mode": "window", "stride": 32}}]
    kw = {"max_length": 128, "k_shot": "all", "max_eval_per_task": None}
    dm = data(windowed, tmp_path / "windowed", **kw)
    assert dm.fingerprint() == data(windowed, tmp_path / "windowed", **kw).fingerprint() != plain.fingerprint()
    dm.setup("fit")
    train, test = dm.report["covid_qa"]["train"], dm.report["covid_qa"]["test"]
    assert train["gold_lost"] == test["gold_lost"] == 0 and train["truncated"] == test["truncated"] == 0
    for row in dm.splits["train"]:
        window = dm.records[row["uid"]]
        assert row["uid"] in dm.windows and window.answers[0] in window.context
        assert dm.tokenizer.decode(row["target_ids"]) == window.answers[0] + "<|im_end|>"
    parents = {dm.windows[u].parent for u in dm.splits["test"]["uid"]}
    assert len(parents) == test["records"] == 3 and len(dm.splits["test"]) == test["windows"] > 3


def test_head_tail_summaries_through_the_data_module(data_root, tmp_path):
    task = [{"name": "mts_dialog", "long_inputs": {"mode": "head_tail", "head": 48, "tail": 32}}]
    dm = data(task, tmp_path)
    dm.setup("fit")
    train = dm.report["mts_dialog"]["train"]
    assert 0 < train["head_tail_cut"] <= train["examples"] and train["head_tail_tokens"] > 0
    cut = [dm.records[u] for u in dm.splits["train"]["uid"] if HEAD_TAIL_MARKER in dm.records[u].source]
    assert len(cut) == train["head_tail_cut"]
    whole = {r.uid: r for r in dm._selected()["mts_dialog"]["train"]}
    for record in cut:  # the served source is the whole one's start and end, the summary untouched
        head, _, tail = record.source.partition(HEAD_TAIL_MARKER)
        assert whole[record.uid].source.startswith(head) and whole[record.uid].source.endswith(tail)
        assert record.summary == whole[record.uid].summary
