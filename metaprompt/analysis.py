"""``metaprompt analyze RUN/``: what the decomposed prompts learned, as figures and the CSVs behind them.

From a pipeline/reproduction folder (``distill/adapter`` = P* and the source factors; every
``targets/<task>/metaprompt_adapted/**/adapter`` = an adapted target) it writes into ``RUN/analysis/``:

* ``similarity_prompt.{csv,png}``: cosine similarity between the materialised task prompts
  ``P* ∘ (U_k V_kᵀ)`` of all sources and adapted targets, and ``similarity_factors.{csv,png}`` between
  their task matrices ``U_k V_kᵀ`` (the task-specific part, free of the factors' scale/sign ambiguity)
  less the sources' mean task matrix: every task starts from the same matrix (all ones, or the source
  mean for targets), which would otherwise dominate every similarity;
  tasks ordered by task type, and within a type by average-linkage clustering (scipy);
* ``nearest_tokens.{csv,png}``: for P* and each task prompt, the vocabulary token whose input embedding
  is closest (cosine) to each prompt position;
* ``target_movement.{csv,png}``: how far each adapted target moved from its initialisation (the mean
  source task matrix at rank r, ``DecomposedPrompt.init_from_mean``): relative Frobenius distance of the
  task matrix, and cosine between the final and initial task prompts.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from metaprompt.adapters import load_adapter
from metaprompt.prompts.decomposed import mean_task_factors


@dataclass
class TaskPrompt:
    """One task's decomposition. ``matrix`` = U Vᵀ [l, d]; ``prompt`` = P* ∘ matrix [l, d]."""

    name: str
    role: str  # "source" or "target"
    task_type: str
    matrix: torch.Tensor
    prompt: torch.Tensor
    adapter: str


def _task_types(names: list[str], root: str | None) -> dict[str, str]:
    try:
        from metaprompt.tasks.catalog import load_manifest

        manifest = load_manifest(root)
    except (OSError, ValueError):  # no data root here: types unknown, the order falls back to clustering
        manifest = {}
    return {n: manifest[n].task_type if n in manifest else "?" for n in names}


def _pick(adapters: list[Path]) -> Path:
    """One adapter per target: the most training data, then the lowest seed (``kall-s0`` > ``k64-s0``)."""

    def rank(path: Path) -> tuple:
        run = path.parent.name  # k64-s1, kall-s0; a pipeline's own folder has neither
        k, _, seed = run.partition("-s")
        size = 10**9 if k == "kall" else int(k[1:]) if k[1:].isdigit() else 0
        return (-size, int(seed) if seed.isdigit() else 0)

    return sorted(adapters, key=rank)[0]


def collect(run: str | Path, root: str | None = None) -> tuple[torch.Tensor, list[TaskPrompt]]:
    """P* ``[l, d]`` and every source's and adapted target's decomposition in ``run``."""
    run = Path(run)
    meta_dir = run / "distill" / "adapter"
    tensors, config = load_adapter(meta_dir, expect_kind="metaprompt")
    shared = tensors["shared_prompt"].float()
    cols, rows = tensors["task_cols"].float(), tensors["task_rows"].float()
    out = [
        TaskPrompt(name, "source", "", cols[k] @ rows[k].T, shared * (cols[k] @ rows[k].T), str(meta_dir))
        for k, name in enumerate(config.task_names)
    ]
    by_target: dict[str, list[Path]] = {}
    for adapter_json in sorted((run / "targets").glob("*/metaprompt_adapted/**/adapter.json")):
        by_target.setdefault(adapter_json.relative_to(run / "targets").parts[0], []).append(adapter_json.parent)
    for target, folders in by_target.items():
        folder = _pick(folders)
        t_tensors, t_config = load_adapter(folder, expect_kind="target", hidden_size=config.hidden_size)
        p = t_tensors.get("shared_prompt", shared).float()
        k = t_config.task_names.index(target) if target in t_config.task_names else 0
        matrix = t_tensors["task_cols"][k].float() @ t_tensors["task_rows"][k].float().T
        out.append(TaskPrompt(target, "target", "", matrix, p * matrix, str(folder)))
    types = _task_types([t.name for t in out], root)
    for t in out:
        t.task_type = types[t.name]
    return shared, out


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """``[N, D] -> [N, N]`` cosine similarities."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    return (unit @ unit.T).clamp(-1, 1).float()


def order(tasks: list[TaskPrompt], sim: torch.Tensor) -> list[int]:
    """Indices grouped by task type (sorted), each group ordered by average-linkage clustering."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    result = []
    for kind in sorted({t.task_type for t in tasks}):
        idx = [i for i, t in enumerate(tasks) if t.task_type == kind]
        if len(idx) > 2:
            dist = (1 - sim[idx][:, idx]).clamp(min=0).double().numpy()
            dist = (dist + dist.T) / 2
            dist[range(len(idx)), range(len(idx))] = 0
            idx = [idx[j] for j in leaves_list(linkage(squareform(dist, checks=False), method="average"))]
        result += idx
    return result


def _labels(tasks: list[TaskPrompt]) -> list[str]:
    return [f"{t.name} ({t.task_type}{', target' if t.role == 'target' else ''})" for t in tasks]


def _write_similarity(out: Path, name: str, tasks: list[TaskPrompt], sim: torch.Tensor, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels(tasks)
    with (out / f"{name}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", *labels])
        for label, row in zip(labels, sim.tolist(), strict=True):
            w.writerow([label, *(f"{v:.4f}" for v in row)])
    size = 3 + 0.32 * len(tasks)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    off = sim[~torch.eye(len(tasks), dtype=torch.bool)] if len(tasks) > 1 else sim.flatten()
    lo, hi = float(off.min()), float(off.max())  # the diagonal's 1s would wash out the off-diagonal range
    im = ax.imshow(sim.numpy(), cmap="RdBu_r" if lo < 0 else "viridis", vmin=min(lo, -hi) if lo < 0 else lo, vmax=hi)
    ax.set_xticks(range(len(tasks)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tasks)), labels, fontsize=7)
    for i, t in enumerate(tasks):  # targets in bold: where they sit among the sources is the point
        weight = "bold" if t.role == "target" else "normal"
        ax.get_xticklabels()[i].set_fontweight(weight)
        ax.get_yticklabels()[i].set_fontweight(weight)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.7, label="cosine similarity")
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    plt.close(fig)


def nearest_tokens(
    prompt: torch.Tensor, embeddings: torch.Tensor, tokenizer, top: int = 1
) -> list[list[tuple[str, float]]]:
    """Per prompt position ``[l, d]``, the ``top`` vocabulary tokens whose embedding ``[V, d]`` is closest."""
    unit_e = torch.nn.functional.normalize(embeddings.float(), dim=1)
    sims = torch.nn.functional.normalize(prompt.float(), dim=1) @ unit_e.T  # [l, V]
    values, ids = sims.topk(top, dim=1)
    return [
        [(tokenizer.convert_ids_to_tokens(int(i)), float(v)) for i, v in zip(row_ids, row_v, strict=True)]
        for row_ids, row_v in zip(ids.tolist(), values.tolist(), strict=True)
    ]


def _write_tokens(out: Path, shared: torch.Tensor, tasks: list[TaskPrompt], embeddings, tokenizer) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("P*", nearest_tokens(shared, embeddings, tokenizer, top=3))]
    rows += [(t.name, nearest_tokens(t.prompt, embeddings, tokenizer, top=3)) for t in tasks]
    with (out / "nearest_tokens.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "position", "rank", "token", "cosine"])
        for name, positions in rows:
            for pos, cands in enumerate(positions):
                for rank, (token, cos) in enumerate(cands, 1):
                    w.writerow([name, pos, rank, token, f"{cos:.4f}"])
    shown = rows[: 1 + min(len(tasks), 12)]
    n_pos = min(len(rows[0][1]), 20)
    fig, ax = plt.subplots(figsize=(1.1 * n_pos + 2, 0.45 * len(shown) + 1))
    grid = torch.tensor([[cands[0][1] for cands in positions[:n_pos]] for _, positions in shown])
    ax.imshow(grid.numpy(), cmap="viridis", aspect="auto")
    for i, (_, positions) in enumerate(shown):
        for j, cands in enumerate(positions[:n_pos]):
            ax.text(j, i, repr(cands[0][0])[1:-1][:8], ha="center", va="center", fontsize=6, color="white")
    ax.set_yticks(range(len(shown)), [name for name, _ in shown], fontsize=7)
    ax.set_xticks(range(n_pos), range(n_pos), fontsize=7)
    ax.set_xlabel("prompt position (colour: cosine to the nearest token embedding)")
    ax.set_title("Nearest vocabulary token per prompt position", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "nearest_tokens.png", dpi=120)
    plt.close(fig)


def movement(shared: torch.Tensor, run: Path, tasks: list[TaskPrompt]) -> list[dict]:
    """Each adapted target's distance from its initialisation (the mean source task matrix at its rank)."""
    tensors, _ = load_adapter(run / "distill" / "adapter", expect_kind="metaprompt")
    rows = []
    for t in tasks:
        if t.role != "target":
            continue
        rank = load_adapter(t.adapter)[1].rank
        u0, v0 = mean_task_factors(tensors["task_cols"], tensors["task_rows"], rank)
        init = u0 @ v0.T
        cos = torch.nn.functional.cosine_similarity(t.prompt.flatten(), (shared * init).flatten(), dim=0)
        rel = float((t.matrix - init).norm() / init.norm().clamp(min=1e-12))
        rows.append({"target": t.name, "task_type": t.task_type, "relative_change": round(rel, 5),
                     "prompt_cosine_to_init": round(float(cos), 5), "adapter": t.adapter})  # fmt: skip
    return rows


def _write_movement(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (out / "target_movement.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["target", "task_type", "relative_change", "prompt_cosine_to_init", "adapter"])
        w.writeheader()
        w.writerows(rows)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 3.2))
    ax.bar([r["target"] for r in rows], [r["relative_change"] for r in rows], color="tab:green")
    ax.set_ylabel("‖UVᵀ − init‖ / ‖init‖")
    ax.set_title("How far each adapted target moved from the mean source task matrix", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "target_movement.png", dpi=120)
    plt.close(fig)


def analyze(
    run: str | Path, out: str | Path | None = None, backbone: str | None = None, root: str | None = None
) -> Path:
    """Write every figure and CSV of the module docstring for ``run``; returns the output folder."""
    from metaprompt.backbones import load_backbone

    run = Path(run)
    out = Path(out) if out else run / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    shared, tasks = collect(run, root)
    _, config = load_adapter(run / "distill" / "adapter")
    prompts = torch.stack([t.prompt.flatten() for t in tasks])
    matrices = torch.stack([t.matrix.flatten() for t in tasks])
    common = matrices[[i for i, t in enumerate(tasks) if t.role == "source"]].mean(0)
    for name, vectors, title in (
        ("similarity_prompt", prompts, "Task prompts P* ∘ (U_k V_kᵀ): cosine similarity"),
        ("similarity_factors", matrices - common, "Task matrices U_k V_kᵀ less their source mean: cosine similarity"),
    ):
        sim = cosine_matrix(vectors)
        idx = order(tasks, sim)
        _write_similarity(out, name, [tasks[i] for i in idx], sim[idx][:, idx], title)
    model, tokenizer = load_backbone(backbone or config.backbone)
    _write_tokens(out, shared, tasks, model.get_input_embeddings().weight.detach(), tokenizer)
    _write_movement(out, movement(shared, run, tasks))
    return out


def analyze_main(argv: list[str]) -> int:
    """``metaprompt analyze RUN [--out DIR] [--backbone NAME] [--root DIR]``."""
    parser = argparse.ArgumentParser(
        prog="metaprompt analyze",
        description="task-similarity heatmaps, nearest-token readouts and target movement of a run's metaprompt",
    )
    parser.add_argument("run", help="a pipeline or reproduction folder (holds distill/adapter and targets/)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/analysis)")
    parser.add_argument("--backbone", default=None, help="backbone for the token readout (default: the adapter's)")
    parser.add_argument("--root", default=None, help="data root, for the task types (default: ../shared/data)")
    args = parser.parse_args(argv)
    try:
        out = analyze(args.run, args.out, args.backbone, args.root)
    except (ValueError, FileNotFoundError) as err:
        print(f"metaprompt analyze: {err}", file=sys.stderr)
        return 2
    print(f"[analyze] wrote {out}", flush=True)
    return 0
