"""EvalArgs: the validated evaluation settings every stage takes."""

from __future__ import annotations

import pytest

from metaprompt.evaluation.args import DEFAULT_MAX_NEW_TOKENS, EvalArgs


def test_budgets_override_the_defaults_per_task_type():
    args = EvalArgs.of({"max_new_tokens": {"nli": 3}})
    assert args.budget("nli") == 3 and args.budget("qa") == DEFAULT_MAX_NEW_TOKENS["qa"]
    assert EvalArgs.of(None) == EvalArgs() and EvalArgs().to_dict()["label_scoring"] == "ranked"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"label_scoring": "ranking"}, r"label_scoring must be one of \('ranked', 'generated'\)"),
        ({"max_new_tokens": {"nli": 0}}, r"max_new_tokens: expected a positive token count .* \{'nli': 0\}"),
        ({"max_new_tokens": {"classification": 4}}, "max_new_tokens: expected a positive token count"),
        ({"stop_strings": {"nli": "\n"}}, r"stop_strings: expected a list of non-empty strings .* 'nli'"),
        ({"stop_strings": {"qa": [""]}}, "stop_strings: expected a list of non-empty strings"),
        ({"log_predictions": -1}, "log_predictions must be >= 0"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        EvalArgs(**bad)


def test_an_unknown_key_names_the_fields_there_are():
    with pytest.raises(ValueError, match=r"evaluation: no setting\(s\) \['generate_eval'\]"):
        EvalArgs.of({"generate_eval": False})
