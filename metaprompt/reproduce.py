"""``metaprompt reproduce -c lightning_configs/reproduce/<preset>.yaml``: the paper's comparison in one command.

Sources -> teachers -> one distilled metaprompt -> for every held-out target: backbone zero-shot,
metaprompt zero-shot, metaprompt adapted (factors only), metaprompt adapted + shared prompt (factors and the shared
prompt), single-task prompt tuning and LoRA, at each k of ``shots`` (an int, or ``"all"``: every training
example, capped at ``all_cap`` per task) and its seeds, each scored on the same fixed test sample.

The runs are the ladder's (:class:`~metaprompt.ladder.Ladder`): each one's record is keyed by its resolved
config, so a rerun skips finished runs, a killed reproduction continues from the last finished one, and
``--time-budget MIN`` stops it between runs (exit status 3: rerun to continue). Outputs under
``output_dir`` as the ladder's (``results.csv``, ``results.md``, one folder per run).

Presets: ``smoke`` (tiny random backbone, 2 sources, 2 targets; seconds, run by the tests) and ``cpu``
(the embedded SmolLM2-135M, 21 sources, 10 targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metaprompt.ladder import Ladder, LadderConfig
from metaprompt.pipeline import SYSTEMS, Stage

PLUS_SHARED = "metaprompt adapted + shared prompt"
"""The target stage training the shared prompt P* too (``TargetAdaptation(train="factors_and_shared")``)."""


@dataclass
class ReproduceConfig(LadderConfig):
    """A reproduction: a :class:`LadderConfig` whose systems include the metaprompt adapted with its shared prompt, and
    whose k may be ``"all"``.

    Attributes:
        all_cap: Training examples per task at k = ``"all"`` (a seeded sample of that size where a task
            has more; None: every example).
    """

    systems: list[str] = field(default_factory=lambda: [*SYSTEMS, PLUS_SHARED])
    shots: dict[int | str, list[int]] = field(default_factory=lambda: {16: [0, 1, 2], 64: [0, 1, 2], "all": [0]})
    steps: dict[int | str, int] = field(default_factory=lambda: {16: 40, 64: 80, "all": 200})
    all_cap: int | None = None


class Reproduction(Ladder):
    """Runs a :class:`ReproduceConfig` (see module docstring)."""

    SYSTEMS = (*SYSTEMS, PLUS_SHARED)
    config: ReproduceConfig

    def __init__(self, config: ReproduceConfig):
        bad = [k for k in config.shots if not (isinstance(k, int) and k > 0 or k == "all")]
        if bad:
            raise ValueError(f"reproduce: shots keys must be positive ints or 'all', got {bad}")
        super().__init__(config)

    def adapted_systems(self, meta: dict[str, Any]) -> list[tuple[str, str, str, Stage, dict[str, Any]]]:
        """The ladder's adapted systems and the metaprompt adapted with its shared prompt P* trained too."""
        target = self.config.target
        plus = Stage(target.max_steps, {**target.model, "train": "factors_and_shared"}, target.data)
        return [*super().adapted_systems(meta), (PLUS_SHARED, "metaprompt_adapted_plus_shared", "target", plus, meta)]

    def k_shot(self, k: int | str) -> int | str:
        """``"all"`` capped at ``all_cap`` examples per task; an int k as it is."""
        if k == "all" and self.config.all_cap is not None:
            return self.config.all_cap
        return k

    def report(self, complete: bool = False) -> None:
        from metaprompt.ladder_report import write_report
        from metaprompt.reproduce_report import comparison_lines
        from metaprompt.resource_report import resource_lines

        def summary(runs):
            return comparison_lines(runs) + resource_lines(runs)

        write_report(self.out, complete, self.current_folders(), title="Reproduction", summary=summary)
        from metaprompt.plots import write_plots

        for path in write_plots(self.out):
            print(f"[reproduce] wrote {path}", flush=True)
