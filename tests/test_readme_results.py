"""The README's reproduction tables are the committed results/cpu/results.md, number for number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped, '**' dropped) of the first Markdown table after ``heading``."""
    rest = text[text.rfind("\n", 0, text.index(heading)) + 1 :]  # from the heading's line on
    lines = re.search(r"((?:^\|.*\|\n)+)", rest, re.M).group(1).splitlines()
    return [[c.strip().strip("*").strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_readme_tables_agree_with_the_committed_cpu_results():
    results = ROOT / "results" / "cpu" / "results.md"
    if not results.is_file():
        pytest.skip("results/cpu not committed in this checkout")
    readme, md = (ROOT / "README.md").read_text(), results.read_text()
    assert md.startswith("# Reproduction (complete)")
    assert table_after(readme, "k = 64, per target:") == table_after(md, "### k = 64")[:-1]  # less the average row
    averages = {row[0]: row[1:] for row in table_after(readme, "Mean over the 10 targets")}
    for k in ("16", "64", "all"):
        assert averages[k] == table_after(md, f"### k = {k}")[-1][1:], k
        diffs = dict(
            re.findall(r"^- (.+?): ([+-]\d+\.\d \[[^\]]+\])", md.split(f"### k = {k}")[1].split("###")[0], re.M)
        )
        readme_rows = {row[0]: row[1:] for row in table_after(readme, "| paired difference")}  # header row is skipped
        for name, value in diffs.items():
            assert (
                readme_rows[name.replace("metaprompt adapted + shared prompt", "adapted + shared prompt")][
                    ("16", "64", "all").index(k)
                ]
                == value
            ), (k, name)


def test_readme_grow_tables_agree_with_the_committed_grow_results():
    results = ROOT / "results" / "cpu" / "grow" / "results.md"
    if not results.is_file():
        pytest.skip("results/cpu/grow not committed in this checkout")
    readme, md = (ROOT / "README.md").read_text(), results.read_text()
    section = readme[readme.index("## Growing the metaprompt") :]
    for heading in ("| task | original |", "| task | zero-shot | teacher |", "| what | wall time, min |"):
        assert table_after(section, heading) == table_after(md, heading), heading
    for line in re.findall(r"^- (?:refined|scratch) − original, mean .*$", md, re.M):
        assert line in readme, line
