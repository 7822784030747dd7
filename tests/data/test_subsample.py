import pytest

from metaprompt.data.subsample import k_shot, parse_k


def test_k_shot_is_deterministic_nested_and_order_preserving():
    items = list(range(100))
    k16, k64 = k_shot(items, 16, "t"), k_shot(items, 64, "t")
    assert len(k16) == 16 and len(k64) == 64
    assert set(k16) <= set(k64)
    assert k16 == sorted(k16) and k_shot(items, 16, "t") == k16
    assert k_shot(items, 16, "other") != k16
    assert k_shot(items, 0, "t") == [] and k_shot(items, "all", "t") == items and k_shot(items, 500, "t") == items


def test_parse_k_rejects_negative():
    assert parse_k("ALL") is None and parse_k("16") == 16
    with pytest.raises(ValueError):
        parse_k(-1)
