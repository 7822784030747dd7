"""`metaprompt analyze`: similarity heatmaps, nearest-token readout and target movement, checked on adapters
built so that each answer is known."""

from __future__ import annotations

import csv

import torch

from metaprompt.__main__ import main
from metaprompt.adapters import AdapterConfig, save_adapter
from metaprompt.backbones import load_backbone
from metaprompt.prompts.decomposed import mean_task_factors


def run_folder(tmp_path, d: int, length: int = 3, rank: int = 1):
    """distill/adapter with sources gad, pgr (two re tasks, identical factors) and rqe (nli);
    targets/rqe/metaprompt_adapted/k16-s0 = its initialisation, .../kall-s0 = moved."""
    model, _ = load_backbone("tiny-llama")
    emb = model.get_input_embeddings().weight.detach()
    shared = emb[[5, 6, 7]].clone()  # P* = the embeddings of tokens 5, 6, 7
    g = torch.Generator().manual_seed(0)
    cols = torch.ones(3, length, rank)
    rows = torch.ones(3, d, rank) + 0.5 * torch.randn(3, d, rank, generator=g)
    rows[1] = rows[0]  # pgr == gad
    save_adapter(tmp_path / "distill" / "adapter", {"shared_prompt": shared, "task_cols": cols, "task_rows": rows},
                 AdapterConfig(kind="metaprompt", backbone="tiny-llama", hidden_size=d, prompt_length=length,
                               rank=rank, task_names=["gad", "pgr", "rqe"]))  # fmt: skip
    u0, v0 = mean_task_factors(cols, rows, rank)
    target = lambda u, v: ({"task_cols": u[None], "task_rows": v[None]}, AdapterConfig(  # noqa: E731
        kind="target", backbone="tiny-llama", hidden_size=d, prompt_length=length, rank=rank, task_names=["head_qa"],
        extra={"metaprompt_adapter": str(tmp_path / "distill" / "adapter")}))  # fmt: skip
    base = tmp_path / "targets" / "head_qa" / "metaprompt_adapted"
    save_adapter(base / "k16-s0" / "adapter", *target(u0, v0))
    save_adapter(base / "kall-s0" / "adapter", *target(2 * u0, v0))  # moved: U V^T doubled
    return shared


def read(path):
    return list(csv.reader(path.open()))


def test_analyze_writes_figures_and_csvs_with_the_known_answers(tmp_path, data_root):
    d = load_backbone("tiny-llama")[0].config.hidden_size
    run_folder(tmp_path, d)
    assert main(["analyze", str(tmp_path), "--root", str(data_root)]) == 0
    out = tmp_path / "analysis"
    for name in ("similarity_prompt", "similarity_factors", "nearest_tokens", "target_movement"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.csv").is_file()
    sim = read(out / "similarity_prompt.csv")
    labels = sim[0][1:]
    assert labels == ["rqe (nli)", "head_qa (qa, target)", "gad (re)", "pgr (re)"] or labels[:2] == [
        "rqe (nli)",
        "head_qa (qa, target)",
    ]
    values = {(row[0], labels[j]): float(v) for row in sim[1:] for j, v in enumerate(row[1:])}
    assert all(abs(values[(lab, lab)] - 1) < 1e-4 for lab in labels)
    assert abs(values[("gad (re)", "pgr (re)")] - 1) < 1e-4  # identical factors, identical prompts
    # the kall adapter (most data) is the one analysed: U V^T = 2 x init -> relative change 1, cosine 1
    (moved,) = list(csv.DictReader((out / "target_movement.csv").open()))
    assert moved["target"] == "head_qa" and moved["adapter"].endswith("kall-s0/adapter")
    assert abs(float(moved["relative_change"]) - 1.0) < 1e-4 and abs(float(moved["prompt_cosine_to_init"]) - 1) < 1e-4
    tokens = [r for r in read(out / "nearest_tokens.csv")[1:] if r[0] == "P*" and r[2] == "1"]
    tokenizer = load_backbone("tiny-llama")[1]
    assert [r[3] for r in tokens] == tokenizer.convert_ids_to_tokens([5, 6, 7])  # P* rows are those embeddings
    assert all(abs(float(r[4]) - 1) < 1e-4 for r in tokens)


def test_analyze_without_a_distillation_is_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("metaprompt analyze: ")
