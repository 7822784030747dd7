"""The evaluation protocol end to end: ``trainer.test`` on real targets with a tiny random backbone.

Label-like tasks (rqe: NLI, head_qa: multiple choice, gad: does a candidate pair hold, yes or no) are
ranked, bioinfer (open RE) is generated; metrics.json says which, with a bootstrap interval and n per
task; predictions.jsonl holds every test example with the statistics that reproduce the reported score.
"""

from __future__ import annotations

import json

import lightning as L
import pytest

from metaprompt.data import MultitaskDataModule
from metaprompt.evaluation import bootstrap_ci
from metaprompt.modules import LoRA, PromptTuning
from metaprompt.modules.backbone_only import BackboneOnly

N = 4  # test examples per task


pytestmark = pytest.mark.usefixtures("one_thread")


def run_test(module_cls, tasks, tmp_path, evaluation=None, **kw):
    dm = MultitaskDataModule(
        tasks=tasks, backbone="tiny-llama", max_length=256, batch_size=3, k_shot=0, max_eval_per_task=N,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    out = tmp_path / module_cls.__name__
    module = module_cls(
        backbone="tiny-llama",
        task_names=dm.task_names,
        output_dir=str(out),
        evaluation={"max_new_tokens": {"re": 4}, **(evaluation or {})},
        **kw,
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(module, datamodule=dm, verbose=False)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return module, json.loads((out / "metrics.json").read_text()), rows


def test_ranked_and_generated_tasks_report_scoring_intervals_and_every_example(data_root, tmp_path):
    module, metrics, rows = run_test(PromptTuning, "rqe,head_qa,gad,bioinfer", tmp_path, prompt_length=4)
    scoring = {"rqe": "ranked", "head_qa": "ranked", "gad": "ranked", "bioinfer": "generated"}
    for task, how in scoring.items():
        assert metrics[f"{task}/scoring"] == how == module.last_test_scores[f"{task}/scoring"]
        assert metrics[f"{task}/n_test"] == N
        assert metrics[f"{task}/ci_low"] <= metrics[f"{task}/score"] <= metrics[f"{task}/ci_high"]
    assert len(rows) == 4 * N and len({r["uid"] for r in rows}) == 4 * N  # every example, not the table's 8
    for row in rows:
        assert row["scoring"] == scoring[row["task"]]
        if row["scoring"] == "generated":
            assert isinstance(row["generation"], str) and row["candidates"] is None
            assert set(row["stats"]) == {"tp", "fp", "fn"}
            continue
        assert row["generation"] is None
        cands = row["candidates"]
        best = max(cands, key=lambda c: c["logprob"])
        assert row["prediction"] == best["answer"]  # the argmax of the summed log-probs
        assert all(c["logprob"] < 0 and c["n_tokens"] >= 2 for c in cands)  # answer + end token
        if row["task"] == "rqe":
            assert sorted(c["answer"] for c in cands) == ["false", "true"]
            assert row["stats"]["correct"] == int(row["prediction"] == row["reference"])
        elif row["task"] == "gad":  # the pair's triple or none, counted like a generated triple set
            assert [c["text"] for c in cands] == ["yes", "no"]
            predicted, gold = len(row["prediction"]), int(row["reference"] == "yes")
            assert row["stats"] == {"tp": predicted * gold, "fp": predicted * (1 - gold), "fn": (1 - predicted) * gold}
        else:
            assert len(cands) in (4, 5) and cands[0]["text"].startswith("A. ")
            assert row["stats"]["correct"] == int(best["text"] == row["reference"])
    for task in scoring:  # the per-example statistics reproduce the reported score
        task_rows = [r for r in rows if r["task"] == task]
        primary = {r["kind"]: module.evaluator.primary_metric(task, r["kind"]) for r in task_rows}
        assert bootstrap_ci(task_rows, primary).estimate == pytest.approx(metrics[f"{task}/score"])


def test_generated_scoring_and_stages_without_prompts(data_root, tmp_path):
    _, metrics, rows = run_test(BackboneOnly, "rqe", tmp_path / "gen", evaluation={"label_scoring": "generated"})
    assert metrics["rqe/scoring"] == "generated" and all(r["candidates"] is None for r in rows)
    for module_cls, kw in ((BackboneOnly, {}), (LoRA, {"r": 2})):  # prompt is None: ranking still works
        _, metrics, rows = run_test(module_cls, "rqe", tmp_path / module_cls.__name__, **kw)
        assert metrics["rqe/scoring"] == "ranked" and len(rows) == N
        assert all(len(r["candidates"]) == 2 for r in rows)


def test_label_scoring_is_validated():
    with pytest.raises(
        ValueError, match=r"evaluation.label_scoring must be one of \('ranked', 'generated'\), got 'ranking'"
    ):
        BackboneOnly(backbone="tiny-llama", task_names=["rqe"], evaluation={"label_scoring": "ranking"})


class SealedAfterSetup(MultitaskDataModule):
    """Refuses per-row lookups once evaluation has taken its table: evaluation must not call back."""

    ROW_LOOKUPS = frozenset({"records", "verbalizers", "task_of", "task_types", "_task_of_uid", "encoder"})
    sealed = False

    def eval_tasks(self):  # once per stage's setup (test, then predict)
        self.sealed = False
        table = super().eval_tasks()
        self.sealed = True
        return table

    def __getattribute__(self, name):
        if name in type(self).ROW_LOOKUPS and object.__getattribute__(self, "sealed"):
            raise AssertionError(f"evaluation read datamodule.{name} after setup")
        return super().__getattribute__(name)


def test_evaluation_reads_its_task_table_once_not_the_datamodule_per_row(data_root, tmp_path):
    dm = SealedAfterSetup(
        tasks="rqe,bioinfer", backbone="tiny-llama", max_length=256, batch_size=3, k_shot=0, max_eval_per_task=N,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    module = PromptTuning(
        backbone="tiny-llama", task_names=dm.task_names, prompt_length=4, evaluation={"max_new_tokens": {"re": 4}}
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    scores = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert dm.sealed and {"test/rqe/score", "test/bioinfer/score"} <= set(scores)  # ranked and generated rows
    predictions = trainer.predict(module, datamodule=dm)
    assert {r["task"] for batch in predictions for r in batch} == {"rqe", "bioinfer"}
