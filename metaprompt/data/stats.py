"""``metaprompt data stats``: every dataset read from its original files, checked and measured.

For each dataset of MANIFEST.yaml: examples per canonical split, whether the reader's per-split
counts equal the manifest's, mean prompt/target tokens under the backbone's chat format, prompts
truncated at ``max_length``, what the truncation cuts away in train and test (rows whose answer, an
entity or a relation's mention is cut out; for summaries, sources cut and the mean tokens cut,
``data/truncation_loss.py``), and how many records survive ``parse(target) == structure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metaprompt.backbones import load_tokenizer
from metaprompt.data.encoding import PromptEncoder
from metaprompt.data.truncation_loss import TruncationLoss, truncation_loss
from metaprompt.tasks.catalog import load_manifest, resolve_root
from metaprompt.tasks.readers import excluded, get_reader
from metaprompt.tasks.splits import CANONICAL, canonical_splits
from metaprompt.tasks.verbalizers import get_verbalizer, label_set

LOSS_SPLITS = ("train", "test")


@dataclass
class DatasetStats:
    """One row of the stats table."""

    id: str
    task_type: str
    role: str
    split_sizes: dict[str, int]
    manifest_ok: bool
    manifest_detail: str
    mean_prompt_tokens: float
    mean_target_tokens: float
    truncated: int
    roundtrip_ok: int
    roundtrip_total: int
    lost: dict[str, TruncationLoss] = field(default_factory=dict)


def dataset_stats(dataset_id: str, root: Path, encoder: PromptEncoder) -> DatasetStats:
    """Read, split, verbalize, tokenise and round-trip one manifest dataset."""
    info = load_manifest(root)[dataset_id]
    original = get_reader(dataset_id)(root / dataset_id)
    skipped = excluded(dataset_id)
    got = {k: len(v) + len(skipped.get(k, {})) for k, v in original.items()}
    mismatch = {k: (got.get(k), n) for k, n in info.counts.items() if got.get(k) != n}
    notes = "; ".join(
        f"{len(v)} excluded from {k}: {', '.join(f'{r} ({why})' for r, why in v.items())}" for k, v in skipped.items()
    )
    extra = set(got) - set(info.counts)
    splits = canonical_splits(dataset_id, original)
    records = [r for s in CANONICAL for r in splits[s]]
    verbalizer = get_verbalizer(info.task_type, label_set(records))
    prompts = [verbalizer.prompt(r) for r in records]
    targets = [verbalizer.target(r) for r in records]
    encoded = encoder.encode_batch(prompts, targets)
    n = max(len(records), 1)
    lost, start = {}, 0
    for split in CANONICAL:  # records and encodings are in split order
        stop = start + len(splits[split])
        if split in LOSS_SPLITS:
            truncated = [e.truncated for e in encoded[start:stop]]
            lost[split] = truncation_loss(records[start:stop], verbalizer, encoder, truncated)
        start = stop
    return DatasetStats(
        id=dataset_id,
        task_type=info.task_type,
        role=info.role,
        split_sizes={s: len(splits[s]) for s in CANONICAL},
        manifest_ok=not mismatch and not extra,
        manifest_detail=notes if not (mismatch or extra) else f"got/manifest {mismatch} extra splits {sorted(extra)}",
        mean_prompt_tokens=sum(len(e.prompt_ids) for e in encoded) / n,
        mean_target_tokens=sum(len(e.target_ids) for e in encoded) / n,
        truncated=sum(e.truncated > 0 for e in encoded),
        roundtrip_ok=sum(verbalizer.parse(t, r) == r.structure() for t, r in zip(targets, records)),
        roundtrip_total=len(records),
        lost=lost,
    )


def all_stats(
    root: str | Path | None = None, backbone: str = "smollm2-135m", max_length: int = 1024
) -> list[DatasetStats]:
    """Stats of every dataset in the manifest, in manifest order."""
    root = resolve_root(root)
    encoder = PromptEncoder(load_tokenizer(backbone), max_length=max_length)
    return [dataset_stats(d, root, encoder) for d in load_manifest(root)]


def render(stats: list[DatasetStats], console=None) -> str:
    """Print the table with Rich and return the summary line (the table's last line)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 140))
    table = Table(title="metaprompt datasets (canonical splits)")
    for col in (
        "id",
        "type",
        "role",
        "train",
        "val",
        "test",
        "manifest",
        "prompt tok",
        "target tok",
        "truncated",
        "lost train/test",
        "roundtrip",
    ):
        table.add_column(
            col,
            justify="left" if col in ("id", "type", "role", "manifest") else "right",
            min_width=max((len(s.id) for s in stats), default=0) if col == "id" else None,  # ids stay whole
        )
    for s in stats:
        table.add_row(
            s.id,
            s.task_type,
            s.role,
            *(str(s.split_sizes[k]) for k in CANONICAL),
            ("ok" + ("*" if s.manifest_detail else "")) if s.manifest_ok else f"MISMATCH {s.manifest_detail}",
            f"{s.mean_prompt_tokens:.0f}",
            f"{s.mean_target_tokens:.0f}",
            str(s.truncated),
            "  ".join(filter(None, (s.lost[k].describe(s.task_type) for k in LOSS_SPLITS if k in s.lost))) or "-",
            f"{s.roundtrip_ok}/{s.roundtrip_total}",
        )
    console.print(table)
    console.print(
        "lost train/test: rows whose answer, entity or relation mention the truncation cuts out / rows; "
        "summarization: sources cut / rows (mean tokens cut)",
        highlight=False,
    )
    for s in stats:
        if s.manifest_ok and s.manifest_detail:
            console.print(f"* {s.id}: {s.manifest_detail}", highlight=False)
    summary = (
        f"datasets: {len(stats)}  examples: {sum(s.roundtrip_total for s in stats)}  "
        f"roundtrip: {sum(s.roundtrip_ok for s in stats)}/{sum(s.roundtrip_total for s in stats)}"
    )
    console.print(summary, highlight=False)
    return summary
