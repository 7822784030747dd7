"""``metaprompt data check``: a user's task set read and checked without training; bad data during any
command is one line naming file, place and problem, with exit status 2."""

from __future__ import annotations

from pathlib import Path

from metaprompt.__main__ import main
from metaprompt.configs import CONFIG_DIR

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "custom"


def test_a_good_task_set_reads_and_a_bad_one_names_file_and_record(tmp_path, data_root, capsys):
    good = tmp_path / "good.yaml"
    good.write_text((FIX / "tasks.yaml").read_text().replace("notes_ner.jsonl", str(FIX / "notes_ner.jsonl")))
    assert main(["data", "check", str(good), "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "my_notes_ner: ok (ner; train 4, validation 0, test 1) (empty: validation)" in out  # said, not hidden
    assert "gad: ok (re;" in out and "2 of 2 tasks read without error" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "tasks:\n  - rqe\n  - {name: typo, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{train: {FIX / 'ner_typo_column.jsonl'}}}, columns: {{text: note, entities: spans}}}}\n"
    )
    assert main(["data", "check", str(bad), "--root", str(data_root)]) == 2
    out = capsys.readouterr().out
    assert "rqe: ok (nli;" in out and "1 of 2 tasks read without error" in out
    assert "typo: ERROR " in out and "ner_typo_column.jsonl: line 1: missing column 'spans'" in out
    assert main(["data", "check", str(tmp_path / "nowhere.yaml")]) == 2
    assert "nowhere.yaml not found" in capsys.readouterr().err


def fit_argv(tasks, tmp_path) -> list[str]:
    """A one-step teacher fit on the tiny backbone serving ``tasks``."""
    return ["fit", "-c", str(CONFIG_DIR / "teacher.yaml"), "-c", str(CONFIG_DIR / "backbones" / "tiny-llama.yaml"),
            "--data.tasks", str(tasks), "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip


def test_bad_data_during_fit_is_one_line_and_exit_2(tmp_path, capsys):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n  - {name: typo, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{train: {FIX / 'ner_text_offsets.jsonl'}}}, columns: {{text: note, entities: spans}}}}\n"
    )
    argv = fit_argv(tasks, tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (earlier tests' closed log streams may add noise)
    assert err[-1].startswith("metaprompt fit: data error: ") and "DataFormatError" not in "\n".join(err)
    assert "ner_text_offsets.jsonl: line 1: entity text 'aspirin' disagrees with offsets 11-20" in err[-1]


def test_a_typo_in_a_task_declaration_during_fit_is_one_line_and_exit_2(tmp_path, capsys):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n  - {name: mine, task_type: ner, role: target, format: jsonl, "
        f"data_files: {{train: {FIX / 'notes_ner.jsonl'}}}, colums: {{text: note}}}}\n  - no_such_dataset\n"
    )
    argv = fit_argv(tasks, tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"metaprompt fit: task declaration error: {tasks}: tasks[0]: unknown key(s) ['colums'] in task 'mine'; known: "
    )
    tasks.write_text("tasks:\n  - no_such_dataset\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"metaprompt fit: task declaration error: {tasks}: tasks[0]: unknown task 'no_such_dataset'; known:"
    )
    assert "UnknownTaskError" not in "\n".join(err)  # (earlier tests' closed log streams may add noise)
