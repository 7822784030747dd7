"""Ranked scoring: candidates are encoded exactly as training targets, and scores are the log-likelihoods
a plain full-sequence forward gives (through the shared soft-prompt prefix path)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metaprompt.backbones import load_backbone
from metaprompt.data.encoding import PromptEncoder
from metaprompt.evaluation.ranking import (
    Candidates,
    Ranked,
    build_candidates,
    candidate_batches,
    score_candidates,
    token_logprobs,
)
from metaprompt.forward import prompted as forward_module
from metaprompt.forward.prompted import prompted_forward
from metaprompt.prompts import SoftPrompt
from metaprompt.tasks.records import NerRecord, NliRecord, QaRecord
from metaprompt.tasks.verbalizers import get_verbalizer

NLI = NliRecord(
    uid="rqe/test/0",
    origin="t",
    premise="Can I take ibuprofen with lisinopril?",
    hypothesis="Drug interactions of lisinopril",
    label="true",
    label_space=("false", "true"),
)
MC = QaRecord(
    uid="head_qa/test/0",
    origin="t",
    question="Which drug inhibits cyclooxygenase?",
    options=("Metformin", "Aspirin, an old and well known analgesic", "Insulin"),
    answers=("Aspirin, an old and well known analgesic",),
    kind="multiple_choice",
)
YNM = QaRecord(
    uid="pubmedqa/test/0", origin="t", question="Does it work?", context="Maybe.", answers=("no",), kind="yes_no_maybe"
)


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return PromptEncoder(tokenizer, max_length=256, min_prompt_tokens=16)


@pytest.mark.parametrize("record", [NLI, MC, YNM], ids=["nli", "multiple_choice", "yes_no_maybe"])
def test_candidates_are_encoded_like_training_targets(record, encoder):
    verbalizer = get_verbalizer(record.task_type, getattr(record, "label_space", ()))
    cands = build_candidates(record, verbalizer, encoder)
    training = encoder.encode(verbalizer.prompt(record), verbalizer.target(record))  # what the data module stores
    gold = cands.answers.index(record.structure())
    assert cands.texts[gold] == verbalizer.target(record)
    assert cands.target_ids[gold] == training.target_ids and cands.prompt_ids == training.prompt_ids
    assert all(t[-1] == encoder.tokenizer.eos_token_id for t in cands.target_ids)
    for answer, text, ids in zip(cands.answers, cands.texts, cands.target_ids):
        assert verbalizer.parse(text, record) == answer  # the answer is what the parser returns
        alt = encoder.encode(verbalizer.prompt(record), text)
        assert ids == alt.target_ids
    expected = {
        "nli": ("false", "true"),
        "multiple_choice": MC.options,
        "yes_no_maybe": ("yes", "no", "maybe"),
    }[getattr(record, "kind", "nli")]
    assert cands.answers == expected
    if record is MC:
        assert cands.texts == ("A. Metformin", "B. Aspirin, an old and well known analgesic", "C. Insulin")


def test_not_label_like_records_have_no_candidates(encoder):
    free = QaRecord(uid="k", origin="t", question="q?", answers=("a",), kind="free_text")
    assert build_candidates(free, get_verbalizer("qa"), encoder) is None
    ner = NerRecord(uid="n", origin="t", text="x")
    assert build_candidates(ner, get_verbalizer("ner", ("Disease",)), encoder) is None
    no_options = dataclasses.replace(MC, options=None)
    assert build_candidates(no_options, get_verbalizer("qa"), encoder) is None


def test_shared_prompt_is_cut_for_the_longest_candidate(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=80, min_prompt_tokens=8)
    record = dataclasses.replace(MC, context="word " * 200)
    verbalizer = get_verbalizer("qa")
    cands = build_candidates(record, verbalizer, encoder)
    longest = max(cands.texts, key=lambda t: len(tokenizer(t)["input_ids"]))
    assert cands.prompt_ids == encoder.encode(verbalizer.prompt(record), longest).prompt_ids
    assert all(len(cands.prompt_ids) + len(t) <= 80 for t in cands.target_ids)


@pytest.fixture(scope="module")
def model_and_prompts():
    model, tokenizer = load_backbone("tiny-llama")
    model.eval().requires_grad_(False)
    with torch.no_grad():  # sharper attention: a wrong position or mask would change the scores visibly
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "o_proj.weight")):
                p.mul_(8.0)
    prompts = SoftPrompt(2, 5, model.config.hidden_size)
    prompts.initialize("sample_vocab", model.get_input_embeddings().weight, seed=1)
    return model, tokenizer, prompts


def test_scores_equal_a_full_sequence_forward_through_the_shared_prefix(model_and_prompts, encoder, monkeypatch):
    model, tokenizer, prompts = model_and_prompts
    records = [NLI, MC, YNM]
    cands = [build_candidates(r, get_verbalizer(r.task_type, getattr(r, "label_space", ())), encoder) for r in records]
    task_ids = [0, 1, 1]
    prefix_calls = []
    original = forward_module.rows_with_prefix
    monkeypatch.setattr(forward_module, "rows_with_prefix", lambda *a, **k: prefix_calls.append(1) or original(*a, **k))

    def call(batch):
        prompt = prompts(batch["task_ids"])
        return prompted_forward(
            model, batch["input_ids"], batch["attention_mask"], batch["labels"], prompt, task_ids=batch["task_ids"]
        )

    with torch.no_grad():
        ranked = score_candidates(call, cands, task_ids, tokenizer.pad_token_id, max_rows=3)  # 8 rows, 3 forwards
    assert len(prefix_calls) == 3  # the shared soft-prompt prefix path was taken
    for c, task, r in zip(cands, task_ids, ranked):
        assert r.uid == c.uid and r.answers == c.answers
        for j, target in enumerate(c.target_ids):
            ids = torch.tensor([c.prompt_ids + target])
            with torch.no_grad():
                embeds = torch.cat([prompts(torch.tensor([task])), model.get_input_embeddings()(ids)], dim=1)
                logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), -1)
            start = prompts.prompts.shape[1] + len(c.prompt_ids)  # first target position
            expected = sum(float(logp[start + k - 1, t]) for k, t in enumerate(target))
            assert r.logprob[j] == pytest.approx(expected, abs=1e-4)
            assert r.n_tokens[j] == len(target)
        assert r.choice == max(range(len(r.logprob)), key=lambda i: r.logprob[i])
        assert r.prediction == r.answers[r.choice] and r.text == r.texts[r.choice]
        json_rows = r.to_json()
        assert [x["answer"] for x in json_rows] == list(c.answers)
        assert json_rows[0]["logprob_per_byte"] == pytest.approx(r.logprob[0] / len(c.texts[0].encode()))


def test_sum_picks_the_prediction_and_per_byte_is_kept():
    r = Ranked("u", ("a", "b"), ("A. x", "B. a much longer option"), (-2.0, -3.0), (3, 7))
    assert r.prediction == "a" and r.choice == 0  # sum: the short one
    assert r.choice_per_byte == 1  # per byte: -3/22 > -2/4
    tie = Ranked("u", ("a", "b"), ("x", "y"), (-1.0, -1.0), (1, 1))
    assert tie.prediction == "a"  # ties go to the earlier candidate


def test_forward_rows_out_of_order_are_caught():
    cands = [Candidates("u", [5, 6], ("a", "b"), ("a", "b"), ([7, 0], [8, 9, 0]))]
    (batch,) = candidate_batches(cands, [0], pad_token_id=2)
    assert batch["target_counts"] == [2, 3] and batch["task_ids"].tolist() == [0, 0]
    logits = torch.zeros(5, 10)
    assert [t.shape[0] for t in token_logprobs(logits, torch.tensor([7, 0, 8, 9, 0]), batch)] == [2, 3]
    with pytest.raises(ValueError, match="row order"):
        token_logprobs(logits, torch.tensor([8, 9, 0, 7, 0]), batch)


@pytest.mark.parametrize("shared_prefix", [False, True], ids=["prompt-per-context", "task-prefix-once"])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt-oss"])
def test_context_encoded_once_gives_the_concatenated_log_probs(name, shared_prefix, monkeypatch):
    """``candidate_logprobs`` (context KV cache shared by an example's candidates, with or without the task
    prefix run once) == one full forward per candidate; contexts of different lengths (left padding) and
    wider than gpt-oss's sliding window."""
    from metaprompt.forward import candidates as candidates_module
    from metaprompt.forward.candidates import candidate_logprobs

    model, _ = load_backbone(name)
    model.eval().requires_grad_(False)
    with torch.no_grad():  # sharper attention: a wrong position or mask changes the scores visibly
        for param_name, p in model.named_parameters():
            if param_name.endswith(("q_proj.weight", "k_proj.weight", "o_proj.weight")):
                p.mul_(8.0)
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    contexts = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (90, 7, 33)]
    candidates = [
        [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]
        for lengths in ((1, 4), (3, 2, 5), (2,))
    ]
    soft = SoftPrompt(3, 4, model.config.hidden_size)
    soft.initialize("sample_vocab", model.get_input_embeddings().weight, seed=2)
    with torch.no_grad():
        task_ids = torch.tensor([1, 0, 1])
        prompt = soft(task_ids)
        prefix_calls = []
        original = candidates_module.rows_with_prefix
        monkeypatch.setattr(
            candidates_module, "rows_with_prefix", lambda *a, **k: prefix_calls.append(1) or original(*a, **k)
        )
        got = candidate_logprobs(
            model, contexts, prompt, candidates, pad_token_id=0, task_ids=task_ids if shared_prefix else None
        )
        # left-padded contexts on a sliding-window backbone fall back to the prompt per context (prefix.py)
        assert len(prefix_calls) == int(shared_prefix and name == "tiny-llama")
        expected = []
        for i, (context, per) in enumerate(zip(contexts, candidates)):
            for target in per:
                ids = torch.tensor([context + target])
                embeds = torch.cat([prompt[i : i + 1], model.get_input_embeddings()(ids)], dim=1)
                logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), -1)
                start = prompt.shape[1] + len(context)
                expected.append(torch.stack([logp[start + k - 1, t] for k, t in enumerate(target)]))
        no_prompt = candidate_logprobs(model, contexts[:1], None, candidates[:1], pad_token_id=0)
        plain = torch.log_softmax(model(torch.tensor([contexts[0] + candidates[0][1]])).logits[0].float(), -1)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    start = len(contexts[0])
    torch.testing.assert_close(
        no_prompt[1],
        torch.stack([plain[start + k - 1, t] for k, t in enumerate(candidates[0][1])]),
        atol=1e-4,
        rtol=1e-4,
    )


def test_candidate_pair_relations_rank_the_pair_against_none(encoder):
    """gad/pgr rows (one entity pair each) are label-like: yes (the candidate triple) or no (none)."""
    from metaprompt.tasks.records import Relation, RelationRecord

    pair = Relation("@GENE$", "associated_with", "@DISEASE$")
    record = RelationRecord(uid="gad/test/1", origin="t", text="@GENE$ variants in @DISEASE$.", candidate=pair)
    verbalizer = get_verbalizer("re", ("associated_with",))
    cands = build_candidates(record, verbalizer, encoder)
    assert cands.answers == ((("@GENE$", "associated_with", "@DISEASE$"),), ())
    assert cands.texts == ("yes", "no")
    assert len(cands.target_ids[0]) == len(cands.target_ids[1])  # no length cost decides between them
    open_re = dataclasses.replace(record, candidate=None)  # open extraction: generated
    assert build_candidates(open_re, verbalizer, encoder) is None
