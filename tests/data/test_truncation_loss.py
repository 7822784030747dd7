"""Gold cut away by the max-length policy, counted (``metaprompt.data.truncation_loss``)."""

from __future__ import annotations

import pytest

from metaprompt.data import MultitaskDataModule
from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.truncation_loss import TruncationLoss, truncation_loss, warning_line
from metaprompt.tasks.records import Entity, NerRecord, QaRecord, Relation, RelationRecord, SummarizationRecord
from metaprompt.tasks.verbalizers import get_verbalizer

FILLER = "The ward round found nothing of note today. "


def loss_of(records, task_type, encoder, labels=()):
    verbalizer = get_verbalizer(task_type, labels)
    encoded = encoder.encode_batch([verbalizer.prompt(r) for r in records], [verbalizer.target(r) for r in records])
    return truncation_loss(records, verbalizer, encoder, [e.truncated for e in encoded])


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return PromptEncoder(tokenizer, max_length=128, min_prompt_tokens=16)


def test_an_answer_in_the_cut_middle_is_lost_one_at_either_end_is_not(encoder):
    def qa(uid, before, after):
        context = FILLER * before + "The drug given was remdesivir. " + FILLER * after
        return QaRecord(uid=uid, origin="x", question="Which drug?", context=context, answers=("remdesivir",))

    records = [qa("mid", 20, 20), qa("start", 0, 40), qa("end", 40, 0), qa("short", 1, 1)]
    yes_no = QaRecord(uid="yn", origin="x", question="?", context=FILLER * 40, answers=("no",), kind="yes_no_maybe")
    loss = loss_of([*records, yes_no], "qa", encoder)
    assert (loss.examples, loss.gold_rows, loss.gold_lost) == (5, 4, 1)  # a label answer is no span
    assert loss.source_cut == 4 and loss.report("qa") == {"gold_rows": 4, "gold_lost": 1}
    assert loss.describe("qa") == "1/5"


def test_entities_and_relation_mentions_are_counted_per_item(encoder):
    # The kept head of a cut prompt is its first quarter: here the instruction, so only the text's end survives.
    text = "aspirin first. " + FILLER * 40 + "heparin in the middle. " + FILLER * 40 + "insulin eases glucose."
    spans = [(m, text.index(m)) for m in ("aspirin", "heparin", "insulin", "glucose")]
    ner = NerRecord(uid="n", origin="x", text=text, entities=tuple(Entity(i, i + len(m), "Drug", m) for m, i in spans))
    loss = loss_of([ner], "ner", encoder, ["Drug"])
    assert (loss.gold_lost, loss.items, loss.items_lost) == (1, 4, 2)
    relations = (Relation("insulin", "treats", "glucose"), Relation("heparin", "treats", "glucose"))
    rel = RelationRecord(uid="r", origin="x", text=text, relations=relations)
    loss = loss_of([rel], "re", encoder, ["treats"])
    assert (loss.gold_lost, loss.items, loss.items_lost) == (1, 2, 1)  # the one whose head is cut


def test_summaries_count_cut_sources_and_tokens(encoder):
    records = [
        SummarizationRecord(uid="a", origin="x", source=FILLER * 40, summary="Nothing."),
        SummarizationRecord(uid="b", origin="x", source="Short.", summary="Short."),
    ]
    loss = loss_of(records, "summarization", encoder)
    assert loss.source_cut == 1 and loss.cut_tokens > 200 and loss.mean_cut_tokens == loss.cut_tokens
    assert loss.describe("summarization") == f"1/2 (-{loss.cut_tokens} tok)"
    line = warning_line("mts", "summarization", 128, {"train": loss, "test": TruncationLoss(examples=3)})
    assert line.startswith("[metaprompt] mts: truncation at max_length=128 cuts the source of 1/2 (-")
    assert "train" in line and "test" not in line and "head_tail" in line
    assert warning_line("rqe", "nli", 128, {"train": TruncationLoss(examples=5, source_cut=5)}) is None


def test_the_data_module_reports_and_warns_once_per_affected_task(data_root, tmp_path):
    dm = MultitaskDataModule(
        tasks="ncbi_disease,rqe", backbone="tiny-llama", max_length=256, batch_size=2, k_shot=16,
        max_eval_per_task=4, cache_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"ncbi_disease: truncation at max_length=256 cuts gold spans") as caught:
        dm.setup("fit")
    assert len([w for w in caught if "truncation at max_length" in str(w.message)]) == 1  # rqe loses nothing
    train = dm.report["ncbi_disease"]["train"]
    assert 0 < train["gold_lost"] <= train["gold_rows"] <= train["examples"] == 16
    assert "gold_lost" not in dm.report["rqe"]["train"]
