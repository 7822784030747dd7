"""The teacher cache: at k = V the cached distillation loss (CE, KL, hidden MSE) and its gradients equal
the online teacher's; the cache is reused only for the teachers and settings it was built from."""

from __future__ import annotations

import json

import pytest
import torch

from metaprompt.data.collate import CausalLMCollator
from metaprompt.modules import MultitaskDistillation, TeacherPromptTuning
from metaprompt.modules.teacher_cache import TeacherCache, batch_keys, row_key

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add contention

TASKS = ["alpha", "beta", "gamma"]


def _rows(n: int = 7) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        n_prompt, n_target = 5 + 3 * i % 11, 2 + i % 4
        ids = torch.randint(10, 5000, (n_prompt + n_target,), generator=g).tolist()
        rows.append({"task_id": i % 3, "prompt_ids": ids[:n_prompt], "target_ids": ids[n_prompt:]})
    return rows


@pytest.fixture(scope="module")
def teacher_adapter(tmp_path_factory):
    teacher = TeacherPromptTuning(backbone="tiny-llama", task_names=TASKS, prompt_length=6, seed=1)
    teacher.configure_model()
    folder = tmp_path_factory.mktemp("teacher") / "adapter"
    teacher.export_adapter(str(folder))
    return str(folder)


def _student(teacher_adapter: str, **kwargs) -> MultitaskDistillation:
    module = MultitaskDistillation(
        teacher_adapter=teacher_adapter, backbone="tiny-llama", task_names=TASKS, prompt_length=6, **kwargs
    )
    module.configure_model()
    with torch.no_grad():  # move the student away from the teachers' mean so that KL and MSE are not ~0
        module.student.task_cols.mul_(torch.linspace(0.5, 1.5, module.student.task_cols.numel()).view_as(
            module.student.task_cols
        ))  # fmt: skip
    return module


def _loss_and_grad(module: MultitaskDistillation, batch: dict) -> tuple[dict, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    losses = module.compute_loss(batch)
    losses["loss"].backward()
    return {k: v.detach() for k, v in losses.items()}, module.student.task_cols.grad.clone()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cached_loss_equals_online_teacher_at_full_vocabulary(teacher_adapter, tmp_path, dtype):
    module = _student(teacher_adapter, teacher_cache_topk=49152, beta=0.5, dtype=dtype)
    rows = _rows()
    batch = CausalLMCollator(module.tokenizer.pad_token_id)([rows[i] for i in (4, 0, 6, 2, 0)])  # a repeat too
    online, online_grad = _loss_and_grad(module, batch)
    cache = module.build_teacher_cache(tmp_path / "cache", rows)
    assert cache.meta["k"] == 49152 and cache.meta["rows"] == len(rows) and cache.meta["dtype"] == dtype
    module.teacher_cache = cache
    cached, cached_grad = _loss_and_grad(module, batch)
    assert online["kl"] > 1e-3 and online["mse"] > 1e-4  # the comparison is not between zeros
    for key in ("loss", "ce", "kl", "mse"):
        torch.testing.assert_close(cached[key], online[key], atol=1e-5, rtol=1e-4)
    # bf16 backward rounds the (fp32-identical up to summation order) KL gradients to 8 bits
    scale = online_grad.abs().max()
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    torch.testing.assert_close(cached_grad, online_grad, atol=float(tolerance * scale), rtol=tolerance)


def test_top_k_cache_is_smaller_and_still_a_divergence(teacher_adapter, tmp_path):
    module = _student(teacher_adapter, teacher_cache_topk=8)
    rows = _rows()
    module.teacher_cache = module.build_teacher_cache(tmp_path / "cache", rows)
    n_tokens = sum(len(r["target_ids"]) for r in rows)
    assert (tmp_path / "cache" / "topk_logprobs.f32").stat().st_size == n_tokens * 8 * 4
    losses = module.compute_loss(CausalLMCollator(module.tokenizer.pad_token_id)(rows[:4]))
    assert torch.isfinite(losses["loss"]) and losses["kl"] >= 0


def test_cache_is_reused_only_for_the_same_teachers_and_settings(teacher_adapter, tmp_path):
    module = _student(teacher_adapter)
    module.build_teacher_cache(tmp_path / "cache", _rows())
    fingerprint = module.teacher_cache_fingerprint()
    assert TeacherCache.open_if_valid(tmp_path / "cache", fingerprint) is not None
    other_k = _student(teacher_adapter, teacher_cache_topk=16)
    assert TeacherCache.open_if_valid(tmp_path / "cache", other_k.teacher_cache_fingerprint()) is None
    with torch.no_grad():
        module.teacher.prompts.add_(0.1)  # other teacher prompts
    assert TeacherCache.open_if_valid(tmp_path / "cache", module.teacher_cache_fingerprint()) is None
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["fingerprint"] == fingerprint


def test_row_missing_from_the_cache_is_a_clear_error(teacher_adapter, tmp_path):
    module = _student(teacher_adapter)
    module.teacher_cache = module.build_teacher_cache(tmp_path / "cache", _rows(3))
    unseen = {"task_id": 0, "prompt_ids": [11, 12, 13], "target_ids": [14, 15]}
    with pytest.raises(KeyError, match="no entry for a training row"):
        module.compute_loss(CausalLMCollator(module.tokenizer.pad_token_id)([unseen]))


def test_rows_whose_target_training_cuts_are_cached_as_cut(teacher_adapter, tmp_path):
    module = _student(teacher_adapter, teacher_cache_topk=49152, beta=0.5)
    module._target_cut = lambda: 3  # the data module's max_train_target_tokens
    rows = _rows()
    assert any(len(r["target_ids"]) > 3 for r in rows)
    batch = CausalLMCollator(module.tokenizer.pad_token_id, max_target_tokens=3)(rows)  # as training collates
    online, _ = _loss_and_grad(module, batch)
    module.teacher_cache = module.build_teacher_cache(tmp_path / "cache", rows)
    cached, _ = _loss_and_grad(module, batch)  # every row found, the cut ones too
    for key in ("loss", "kl", "mse"):
        torch.testing.assert_close(cached[key], online[key], atol=1e-5, rtol=1e-4)
    uncut = module.teacher_cache_fingerprint()
    module._target_cut = lambda: None
    assert module.teacher_cache_fingerprint() != uncut  # a cache built for another cut is rebuilt


def test_row_keys_match_between_encoded_rows_and_padded_batches():
    rows = _rows()
    batch = CausalLMCollator(pad_token_id=2)(rows)
    assert batch_keys(batch) == [row_key(r["task_id"], r["prompt_ids"], r["target_ids"]) for r in rows]
    # the same tokens split differently between prompt and target, or another task, are other rows
    r = rows[0]
    ids = r["prompt_ids"] + r["target_ids"]
    assert row_key(0, ids[:-1], ids[-1:]) != row_key(0, ids[:-2], ids[-2:]) != row_key(1, ids[:-2], ids[-2:])


def test_fit_builds_the_cache_under_the_run_folder_once(data_root, tmp_path):
    import lightning as L

    from metaprompt.data import MultitaskDataModule

    dm = MultitaskDataModule(tasks="gad,rqe", backbone="tiny-llama", max_length=128, batch_size=4, k_shot=8)
    teacher = TeacherPromptTuning(backbone="tiny-llama", task_names=dm.task_names, prompt_length=4)
    teacher.configure_model()
    teacher.export_adapter(str(tmp_path / "teacher"))

    def fit() -> MultitaskDistillation:
        module = MultitaskDistillation(
            teacher_adapter=str(tmp_path / "teacher"),
            backbone="tiny-llama",
            task_names=dm.task_names,
            prompt_length=4,
            teacher_cache=True,
            evaluation={"generate": False},
        )
        trainer = L.Trainer(
            max_steps=2,
            accelerator="cpu",
            default_root_dir=str(tmp_path / "run"),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, datamodule=dm)
        return module

    first = fit()
    meta = tmp_path / "run" / "teacher_cache" / "meta.json"
    assert first.teacher_cache is not None and first.teacher_cache.folder == meta.parent
    assert json.loads(meta.read_text())["rows"] == 16  # 8 shots x 2 tasks, each once
    built = meta.stat().st_mtime_ns
    fit()  # same teachers and settings: the cache is reused, not rebuilt
    assert meta.stat().st_mtime_ns == built


@pytest.mark.parametrize("terminal", [True, False])
def test_building_the_cache_shows_a_bar_only_on_a_terminal(teacher_adapter, tmp_path, capfd, monkeypatch, terminal):
    monkeypatch.setenv("METAPROMPT_PROGRESS", "1" if terminal else "0")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    _student(teacher_adapter).build_teacher_cache(tmp_path / "cache", _rows(3))
    err = capfd.readouterr().err
    assert ("teacher cache" in err) == terminal, err
