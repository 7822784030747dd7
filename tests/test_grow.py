"""`metaprompt grow` on the tiny backbone: a finished distillation of 2 sources grown by 1 task, the old
tasks' prompts exactly unchanged without refinement, the report written, reruns skipped."""

from __future__ import annotations

import pytest
import torch

from metaprompt.adapters import load_adapter
from metaprompt.grow import GrowConfig, Grower, merge_adapters
from metaprompt.pipeline import Pipeline, PipelineConfig, Stage

pytestmark = pytest.mark.slow

SETTINGS = dict(
    backbone="tiny-llama", prompt_length=2, sources="gad,kqa_nli", accelerator="cpu",
    max_new_tokens={"re": 4, "nli": 2},
    data={"max_length": 96, "min_prompt_tokens": 16, "batch_size": 2, "max_eval_per_task": 6},
    teacher=Stage(3, {"optim": {"lr": 0.01}}), distill=Stage(3, {"optim": {"lr": 0.01}}),
)  # fmt: skip


def test_grow_adds_a_task_keeps_the_old_prompts_and_reports(tmp_path, data_root, capsys):
    data = {**SETTINGS["data"], "root": str(data_root)}
    base = PipelineConfig(output_dir=str(tmp_path), **{**SETTINGS, "data": data})
    pipe = Pipeline(base)
    for run in pipe.runs_for_sources():
        pipe.execute(run)
    config = GrowConfig(
        output_dir=str(tmp_path), new_tasks="rqe", factors=Stage(3, {"optim": {"lr": 0.01}}),
        refine=Stage(2, data={"k_shot": 4}), scratch=True, **{**SETTINGS, "data": data},
    )  # fmt: skip
    results = Grower(config).run()
    assert set(results) == {"new zero-shot", "teacher", "original", "factors", "grown", "refined", "scratch"}
    old, _ = load_adapter(tmp_path / "distill" / "adapter")
    grown, grown_config = load_adapter(tmp_path / "grow" / "metaprompt" / "adapter")
    assert grown_config.task_names == ["gad", "kqa_nli", "rqe"]
    assert torch.equal(grown["shared_prompt"], old["shared_prompt"])  # P* and the old factors: untouched
    assert torch.equal(grown["task_cols"][:2], old["task_cols"]) and torch.equal(
        grown["task_rows"][:2], old["task_rows"]
    )
    assert not torch.equal(grown["task_rows"][2], grown["task_rows"][0])  # the new task's factors trained
    refined, _ = load_adapter(tmp_path / "grow" / "refined" / "adapter")
    assert not torch.equal(refined["shared_prompt"], old["shared_prompt"])  # refinement moves P*
    assert set(results["grown"]) >= {"rqe/score"} and "gad/score" not in results["grown"]  # new tasks scored
    report = (tmp_path / "grow" / "results.md").read_text()
    assert "## The old tasks" in report and "## The new tasks" in report and "| rqe |" in report
    assert "old tasks' U, V are **bit-identical** to the base metaprompt's (checked)" in report
    assert "refined − original, mean over the 2 old tasks:" in report and "| gad |" in report
    assert "from scratch: new teacher(s) + distillation on all 3 tasks" in report
    capsys.readouterr()
    Grower(config).run()
    assert capsys.readouterr().out.count("up to date, skipped") == 7  # the pipeline's distill was not tested


def test_grow_refuses_a_task_it_already_has_and_a_missing_base(tmp_path):
    with pytest.raises(ValueError, match=r"\['gad'\] already among the sources"):
        Grower(GrowConfig(output_dir=str(tmp_path), new_tasks="gad", **SETTINGS))
    with pytest.raises(FileNotFoundError, match="grow a finished distillation"):
        Grower(GrowConfig(output_dir=str(tmp_path), new_tasks="rqe", **SETTINGS)).check_ready()


def test_merge_refuses_a_different_shared_prompt(tmp_path):
    from metaprompt.adapters import AdapterConfig, save_adapter

    def meta(folder, names, shared):
        k = len(names)
        save_adapter(folder, {"shared_prompt": shared, "task_cols": torch.ones(k, 2, 1), "task_rows": torch.ones(k, 4, 1)},
                     AdapterConfig("metaprompt", "tiny-llama", 4, 2, 1, names))  # fmt: skip

    meta(tmp_path / "a", ["x"], torch.ones(2, 4))
    meta(tmp_path / "b", ["y"], torch.zeros(2, 4))
    with pytest.raises(ValueError, match="its P\\* differs"):
        merge_adapters(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    meta(tmp_path / "b", ["y"], torch.ones(2, 4))
    _, config = load_adapter(merge_adapters(tmp_path / "a", tmp_path / "b", tmp_path / "c"))
    assert config.task_names == ["x", "y"]
