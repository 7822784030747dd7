"""Every stage trains exactly its own parameters, has the parameter count the method says, and exports
an adapter that reads back; teacher prompt tuning can overfit one batch; self-distillation is loss-free.

Training runs on hand-built batches of random token ids (two tasks, ids mixed in every batch) through a
real ``lightning.Trainer``; only the zero-shot test needs the real data.
"""

from __future__ import annotations

import dataclasses
import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from metaprompt.adapters import AdapterConfig, load_adapter, save_adapter
from metaprompt.data import MultitaskDataModule
from metaprompt.data.collate import CausalLMCollator
from metaprompt.modules import LoRA, MultitaskDistillation, PromptTuning, TargetAdaptation, TeacherPromptTuning
from metaprompt.modules.target import TRAIN_MODES

TASKS = ["a", "b"]
K, LENGTH, D, RANK = 2, 4, 64, 2  # d = the tiny backbones' hidden size


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matmuls: threads only add contention


def make_batch(seed=0, rows=4, task_ids=None, target_length=3):
    g = torch.Generator().manual_seed(seed)
    task_ids = task_ids if task_ids is not None else [i % K for i in range(rows)]
    return CausalLMCollator(pad_token_id=2)(
        [
            {
                "uid": f"{seed}-{i}",
                "task_id": task,
                "prompt_ids": torch.randint(
                    3, 5000, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g
                ).tolist(),
                "target_ids": torch.randint(3, 5000, (target_length,), generator=g).tolist(),
            }
            for i, task in enumerate(task_ids)
        ]
    )


def batches(n=2, **kw):
    return DataLoader([make_batch(seed, **kw) for seed in range(n)], batch_size=None)


def trainer(max_steps, **kw):
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **kw,
    )


def snapshot(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def train(module, steps=3, loader=None):
    """configure_model, snapshot every parameter, fit; returns the snapshot."""
    module.configure_model()
    before = snapshot(module)
    trainer(steps).fit(module, train_dataloaders=loader or batches())
    return before


def assert_changed_exactly(module, before, expected_trainable: set[str]):
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable
    for name, p in module.named_parameters():
        if name in trainable:
            assert not torch.equal(p, before[name]), f"trainable {name} did not change"
        else:
            assert torch.equal(p, before[name]), f"frozen {name} changed"


def backbone_size(module) -> int:
    return sum(p.numel() for n, p in module.backbone.named_parameters() if "lora_" not in n)


# --- stage 1: teacher prompt tuning (and the prompt tuning baseline) --------------------------------------


@pytest.fixture(scope="module")
def teacher_adapter(tmp_path_factory):
    module = TeacherPromptTuning(backbone="tiny-llama", task_names=TASKS, prompt_length=LENGTH)
    before = train(module)
    folder = tmp_path_factory.mktemp("teacher")
    module.export_adapter(str(folder))
    return module, before, folder


def test_teacher_trains_only_its_prompts(teacher_adapter):
    module, before, _ = teacher_adapter
    assert_changed_exactly(module, before, {"prompts.prompts"})
    for task in range(K):  # both tasks' rows moved (both appear in every batch)
        assert not torch.equal(module.prompts.prompts[task], before["prompts.prompts"][task])
    counts = module.parameter_counts()
    assert counts["trainable_params"] == K * LENGTH * D
    assert counts["backbone_params"] == backbone_size(module)


def test_teacher_export_reads_back(teacher_adapter):
    module, _, folder = teacher_adapter
    tensors, config = load_adapter(folder, expect_kind="teacher", hidden_size=D)
    assert config.task_names == TASKS and config.prompt_length == LENGTH and config.rank == 0
    assert torch.equal(tensors["prompts"], module.prompts.prompts.detach())


def test_prompt_tuning_baseline_is_the_same_model_with_its_own_kind(tmp_path):
    module = PromptTuning(
        backbone="tiny-llama", task_names=["a"], prompt_length=LENGTH, prompt_init="text", init_text="yes"
    )
    before = train(module, steps=2, loader=batches(task_ids=[0, 0]))
    assert_changed_exactly(module, before, {"prompts.prompts"})
    assert module.parameter_counts()["trainable_params"] == LENGTH * D
    module.export_adapter(str(tmp_path))
    tensors, config = load_adapter(tmp_path, expect_kind="prompt_tuning")
    assert tensors["prompts"].shape == (1, LENGTH, D)


def test_teacher_overfits_one_batch():
    """60 steps on one fixed batch: the loss falls below 30% of where it started.

    The stock tiny backbone (std-0.02 weights, tied embeddings) cannot express a peaked next-token
    distribution at all (its logits stay within about +-1.3, so the loss cannot go below ~9.5), so its
    weight matrices are scaled by 15 first; the prompt is then re-initialised from the scaled vocabulary.
    """
    module = TeacherPromptTuning(backbone="tiny-llama", task_names=["a"], prompt_length=8, optim={"lr": 0.1})
    module.configure_model()
    with torch.no_grad():
        for p in module.backbone.parameters():
            if p.dim() >= 2:
                p.mul_(15.0)
    module.build_adapter()
    batch = make_batch(seed=0, task_ids=[0, 0, 0, 0], target_length=2)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer(60, callbacks=[Record()]).fit(module, train_dataloaders=DataLoader([batch] * 60, batch_size=None))
    assert len(losses) == 60
    assert losses[-1] < 0.3 * losses[0], f"loss {losses[0]:.2f} -> {losses[-1]:.2f}"


# --- stage 2: multitask distillation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(teacher_adapter, tmp_path_factory):
    _, _, teacher_folder = teacher_adapter
    module = MultitaskDistillation(
        teacher_adapter=str(teacher_folder),
        backbone="tiny-llama",
        task_names=TASKS,
        rank=RANK,
        factor_lr=0.05,
    )
    before = train(module)
    folder = tmp_path_factory.mktemp("distill")
    module.export_adapter(str(folder))
    return module, before, folder


def test_distillation_trains_shared_prompt_and_factors_only(distilled, teacher_adapter):
    module, before, _ = distilled
    assert_changed_exactly(module, before, {"student.shared_prompt", "student.task_cols", "student.task_rows"})
    assert torch.equal(module.teacher.prompts, teacher_adapter[0].prompts.prompts.detach())  # frozen teachers
    assert module.parameter_counts()["trainable_params"] == LENGTH * D + K * RANK * (LENGTH + D)
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [0.3, 0.05]


def test_distillation_reorders_teacher_prompts_by_its_task_list(teacher_adapter):
    teacher, _, folder = teacher_adapter
    module = MultitaskDistillation(teacher_adapter=str(folder), backbone="tiny-llama", task_names=["b", "a"])
    module.configure_model()
    assert torch.equal(module.teacher.prompts[0], teacher.prompts.prompts[1].detach())
    assert torch.equal(module.student.shared_prompt, teacher.prompts.prompts.detach().mean(0))  # teacher_mean init
    with pytest.raises(ValueError, match="no teacher prompt"):
        MultitaskDistillation(teacher_adapter=str(folder), backbone="tiny-llama", task_names=["c"]).configure_model()


def test_distillation_export_reads_back(distilled):
    module, _, folder = distilled
    tensors, config = load_adapter(folder, expect_kind="metaprompt", hidden_size=D)
    assert (config.rank, config.prompt_length, config.task_names) == (RANK, LENGTH, TASKS)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "shared_prompt": (LENGTH, D),
        "task_cols": (K, LENGTH, RANK),
        "task_rows": (K, D, RANK),
    }
    assert torch.equal(tensors["task_rows"], module.student.task_rows.detach())


def test_student_equal_to_teacher_has_zero_distillation_loss(tmp_path):
    teacher_prompts = torch.randn(1, LENGTH, D, generator=torch.Generator().manual_seed(0)) * 0.02
    config = AdapterConfig(kind="teacher", backbone="tiny-llama", hidden_size=D, prompt_length=LENGTH, task_names=["a"])
    save_adapter(tmp_path, {"prompts": teacher_prompts}, config)
    module = MultitaskDistillation(
        teacher_adapter=str(tmp_path), backbone="tiny-llama", task_names=["a"], factor_init="identity", beta=1.0
    )
    module.configure_model()
    with torch.no_grad():
        module.student.shared_prompt.copy_(teacher_prompts[0])
    batch = make_batch(task_ids=[0, 0, 0])
    losses = module.compute_loss(batch)
    assert losses["kl"].item() == 0.0 and losses["mse"].item() == 0.0
    assert losses["loss"].item() == losses["ce"].item() > 0
    with torch.no_grad():  # and the terms are live: a different student is penalised
        module.student.task_cols.mul_(1.5)
    moved = module.compute_loss(batch)
    assert moved["kl"].item() > 0 and moved["mse"].item() > 0


def test_fused_distillation_equals_the_logits_path(distilled):
    """The memory fast path (CE + KL from hidden states through the frozen head) changes no number."""
    module = distilled[0]
    batch = make_batch(seed=5, rows=4, target_length=6)
    results = {}
    for fused in (True, False):
        module.fast_paths = dataclasses.replace(module.fast_paths, fused_loss=fused)
        module.zero_grad()
        losses = module.compute_loss(batch)
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
        results[fused] = ({k: v.detach() for k, v in losses.items()}, grads)
    module.fast_paths = dataclasses.replace(module.fast_paths, fused_loss=True)
    (fused_losses, fused_grads), (ref_losses, ref_grads) = results[True], results[False]
    assert ref_losses["kl"] > 0  # a trained student differs from its teachers: the KL term is live
    for name in ("loss", "ce", "kl", "mse"):
        torch.testing.assert_close(fused_losses[name], ref_losses[name], atol=1e-6, rtol=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-7, rtol=1e-4)


def test_no_distillation_skips_the_teachers_and_trains_on_the_cross_entropy(distilled, monkeypatch):
    """λ = 0 (the ablation): the loss and its gradients are the CE of the full path, without a teacher forward."""
    module = distilled[0]
    batch = make_batch(seed=6, rows=4, target_length=5)
    module.zero_grad()
    full = module.compute_loss(batch)
    full["ce"].backward()
    expected = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
    lam = module.loss_fn.lam
    monkeypatch.setattr(module.loss_fn, "lam", 0.0)
    monkeypatch.setattr(module, "teacher_forward", lambda *a, **k: pytest.fail("the teachers ran with lam = 0"))
    module.zero_grad()
    losses = module.compute_loss(batch)
    losses["loss"].backward()
    assert lam > 0 and set(losses) == {"loss", "ce"}
    torch.testing.assert_close(losses["loss"], full["ce"].float(), atol=1e-6, rtol=1e-5)
    for name, grad in expected.items():
        torch.testing.assert_close(module.get_parameter(name).grad, grad, atol=1e-7, rtol=1e-4)


# --- stage 3: target adaptation -------------------------------------------------------------------------------


EXPECTED_TRAINABLE = {
    "factors": ({"prompt.task_cols", "prompt.task_rows"}, RANK * (LENGTH + D)),
    "factors_and_shared": (
        {"prompt.task_cols", "prompt.task_rows", "prompt.shared_prompt"},
        RANK * (LENGTH + D) + LENGTH * D,
    ),
    "shared": ({"prompt.shared_prompt"}, LENGTH * D),
}


@pytest.mark.parametrize("mode", TRAIN_MODES)
def test_target_adaptation_trains_what_its_mode_says(distilled, mode, tmp_path):
    _, _, folder = distilled
    source, _ = load_adapter(folder)
    module = TargetAdaptation(metaprompt_adapter=str(folder), train=mode, backbone="tiny-llama", task_names=["t"])
    module.configure_model()
    # target init: P* and the mean source task matrix at rank r (not the mean U times the mean V)
    assert torch.equal(module.prompt.shared_prompt, source["shared_prompt"])
    mean = torch.einsum("klr,kdr->ld", source["task_cols"], source["task_rows"]) / K
    u, s, vh = torch.linalg.svd(mean)
    best = (u[:, :RANK] * s[:RANK]) @ vh[:RANK]  # the best rank-r approximation of the mean
    torch.testing.assert_close(module.prompt.task_matrix(torch.tensor([0]))[0], best, atol=1e-5, rtol=1e-5)
    before = train(module, steps=2, loader=batches(task_ids=[0, 0]))
    names, count = EXPECTED_TRAINABLE[mode]
    assert_changed_exactly(module, before, names)
    assert module.parameter_counts()["trainable_params"] == count  # K = 1 target
    module.export_adapter(str(tmp_path))
    tensors, config = load_adapter(tmp_path, expect_kind="target", hidden_size=D)
    assert ("shared_prompt" in tensors) == (mode != "factors")
    assert tuple(tensors["task_cols"].shape) == (1, LENGTH, RANK) and config.extra["train"] == mode
    assert config.extra["metaprompt_adapter"] == str(folder)


def test_target_adaptation_rejects_unknown_mode(distilled):
    with pytest.raises(ValueError, match="train must be one of"):
        TargetAdaptation(metaprompt_adapter=str(distilled[2]), train="everything")


def test_zero_shot_target_adaptation_tests_without_fit(distilled, data_root, tmp_path):
    dm = MultitaskDataModule(
        tasks="rqe",
        backbone="tiny-llama",
        max_length=128,
        batch_size=4,
        k_shot=0,
        max_eval_per_task=4,
        cache_dir=str(tmp_path / "cache"),
    )
    module = TargetAdaptation(
        metaprompt_adapter=str(distilled[2]),
        backbone="tiny-llama",
        task_names=dm.task_names,
        evaluation={"max_new_tokens": {"nli": 4}},
        output_dir=str(tmp_path / "out"),
    )
    trainer(1).test(module, datamodule=dm, verbose=False)
    assert {"rqe/score", "macro/score"} <= set(module.last_test_scores)
    assert 0.0 <= module.last_test_scores["rqe/score"] <= 1.0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["trainable_params"] == RANK * (LENGTH + D)
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 4


def test_stop_strings_cut_generated_answers(data_root, tmp_path):
    from metaprompt.modules import BackboneOnly

    dm = MultitaskDataModule(
        tasks="rqe", backbone="tiny-llama", max_length=128, batch_size=4, k_shot=0, max_eval_per_task=4,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip

    def generations(**kw):
        module = BackboneOnly(
            backbone="tiny-llama", task_names=dm.task_names, output_dir=str(tmp_path / "out"),
            evaluation={"label_scoring": "generated", "max_new_tokens": {"nli": 8}, **kw},
        )  # fmt: skip
        trainer(1).test(module, datamodule=dm, verbose=False)
        rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
        return {r["uid"]: r["generation"] for r in rows}

    free = generations()
    uid, text = max(free.items(), key=lambda item: len(item[1]))
    assert len(text) >= 4
    stop = text[1:3]  # a string inside one row's answer (the tiny backbone's are newlines)
    cut = generations(stop_strings={"nli": [stop]})
    assert cut[uid] == text[: text.index(stop)]
    assert all(cut[u] == (t[: t.index(stop)] if stop in t else t) for u, t in free.items())
    with pytest.raises(ValueError, match="stop_strings"):
        BackboneOnly(backbone="tiny-llama", evaluation={"stop_strings": {"nli": "\n"}})


# --- baseline: LoRA --------------------------------------------------------------------------------------------


def test_lora_trains_only_its_adapters_and_exports(tmp_path):
    module = LoRA(backbone="tiny-llama", task_names=["a"], r=4, optim={"lr": 1e-2})
    before = train(module, steps=3, loader=batches(task_ids=[0, 0]))
    lora_names = {n for n in before if ".lora_" in n}
    assert lora_names and all("q_proj" in n or "v_proj" in n for n in lora_names)
    assert_changed_exactly(module, before, lora_names)
    peft_trainable, _ = module.backbone.get_nb_trainable_parameters()
    # per layer r * (in + out) for q_proj (64 -> 64) and v_proj (64 -> 2 kv heads * 16)
    assert module.parameter_counts()["trainable_params"] == peft_trainable == 2 * 4 * ((64 + 64) + (64 + 32))
    module.export_adapter(str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    tensors, config = load_adapter(tmp_path, expect_kind="lora")
    assert config.rank == 4 and config.prompt_length == 0
    assert {f"backbone.{name}" for name in tensors} == lora_names
    for name, p in module.backbone.named_parameters():
        if name in tensors:
            assert torch.equal(tensors[name], p.detach())


# --- every stage: a task's parameters move only on steps that saw it -------------------------------------------


def test_a_step_without_task_b_leaves_its_teacher_prompt_bit_identical():
    module = TeacherPromptTuning(backbone="tiny-llama", task_names=TASKS, prompt_length=LENGTH, optim={"lr": 0.1})
    module.configure_model()
    loader = DataLoader([make_batch(0, task_ids=[0, 1]), make_batch(1, task_ids=[0, 0])], batch_size=None)
    seen = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(pl_module.prompts.prompts.detach().clone())

    before = module.prompts.prompts.detach().clone()
    trainer(2, callbacks=[Watch()]).fit(module, train_dataloaders=loader)
    assert not torch.equal(seen[0][1], before[1])  # step 1 trained task b ...
    assert torch.equal(seen[1][1], seen[0][1])  # ... step 2 had no b row: b is bit-identical (no momentum, no decay)
    assert not torch.equal(seen[1][0], seen[0][0])


def test_with_one_task_per_batch_each_teacher_learns_what_it_learns_alone():
    """tasks_per_batch=1 (data/grouping.py): a multi-teacher run == each teacher trained on its own batches."""
    together = TeacherPromptTuning(backbone="tiny-llama", task_names=TASKS, prompt_length=LENGTH, optim={"lr": 0.1})
    together.configure_model()
    own = {t: [make_batch(10 * t + i, task_ids=[t] * 4) for i in range(3)] for t in range(K)}
    interleaved = [own[t][i] for i in range(3) for t in range(K)]  # a, b, a, b, a, b
    init = together.prompts.prompts.detach().clone()
    trainer(len(interleaved)).fit(together, train_dataloaders=DataLoader(interleaved, batch_size=None))
    for t in range(K):
        alone = TeacherPromptTuning(
            backbone="tiny-llama", task_names=[TASKS[t]], prompt_length=LENGTH, optim={"lr": 0.1}
        )
        alone.configure_model()
        with torch.no_grad():
            alone.prompts.prompts.copy_(init[t : t + 1])
        rows = [{**b, "task_ids": torch.zeros_like(b["task_ids"])} for b in own[t]]
        trainer(len(rows)).fit(alone, train_dataloaders=DataLoader(rows, batch_size=None))
        torch.testing.assert_close(together.prompts.prompts[t], alone.prompts.prompts[0], atol=1e-6, rtol=1e-5)
        assert not torch.equal(alone.prompts.prompts[0], init[t])


def test_distillation_factors_of_an_absent_task_do_not_move(distilled):
    module, _, _ = distilled
    opt = module.configure_optimizers()["optimizer"]
    cols = module.student.task_cols.detach().clone()
    for batch in (make_batch(5, task_ids=[0, 1]), make_batch(6, task_ids=[0, 0, 0])):
        before = module.student.task_cols.detach().clone()
        opt.zero_grad()
        module.compute_loss(batch)["loss"].backward()
        opt.step()
    assert torch.equal(module.student.task_cols[1], before[1]) and not torch.equal(module.student.task_cols[0], cols[0])


# --- settings reach their stage or are rejected there ---------------------------------------------------------


def test_prompt_length_is_honoured_or_rejected_by_every_stage(teacher_adapter, distilled):
    _, _, teacher_folder = teacher_adapter
    with pytest.raises(ValueError, match="prompt_length=7 but the teacher prompts"):
        MultitaskDistillation(
            teacher_adapter=str(teacher_folder), backbone="tiny-llama", task_names=TASKS, prompt_length=7
        ).configure_model()
    with pytest.raises(ValueError, match="prompt_length=7 but the metaprompt"):
        TargetAdaptation(
            metaprompt_adapter=str(distilled[2]), backbone="tiny-llama", task_names=["t"], prompt_length=7
        ).configure_model()
    with pytest.raises(ValueError, match="LoRA has no soft prompt"):
        LoRA(backbone="tiny-llama", task_names=["t"], prompt_length=7)
    assert TeacherPromptTuning(backbone="tiny-llama", task_names=["t"]).hparams.prompt_length == 100
    matching = MultitaskDistillation(
        teacher_adapter=str(teacher_folder), backbone="tiny-llama", task_names=TASKS, prompt_length=LENGTH
    )
    matching.configure_model()
    assert matching.student.length == LENGTH


@pytest.mark.parametrize("stage", ["lora", "target", "backbone"])
def test_fast_paths_reach_every_stage(stage, distilled):
    from metaprompt.forward import FastPaths
    from metaprompt.modules import BackboneOnly

    kw = dict(backbone="tiny-llama", task_names=["t"], fast_paths={"fused_loss": False})
    module = {
        "lora": lambda: LoRA(**kw),
        "target": lambda: TargetAdaptation(metaprompt_adapter=str(distilled[2]), **kw),
        "backbone": lambda: BackboneOnly(**kw),
    }[stage]()
    assert module.fast_paths == FastPaths(fused_loss=False)
    with pytest.raises(ValueError, match="unknown switch"):
        LoRA(backbone="tiny-llama", task_names=["t"], fast_paths={"warp_speed": True})
