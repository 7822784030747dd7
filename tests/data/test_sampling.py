from collections import Counter

import pytest
import torch

from metaprompt.data.sampling import TemperatureSampler, task_probabilities


def test_probabilities_follow_n_to_the_one_over_t():
    p = task_probabilities([10, 100], temperature=2.0)
    expected = torch.tensor([10**0.5, 100**0.5], dtype=torch.float64)
    torch.testing.assert_close(p, expected / expected.sum())
    assert task_probabilities([10, 100], 1.0)[1] == pytest.approx(100 / 110)
    assert task_probabilities([10, 0, 100], 1e9)[1] == 0  # empty tasks are never drawn
    with pytest.raises(ValueError):
        task_probabilities([1], 0)


def test_sampler_frequencies_offsets_and_determinism():
    sizes = [50, 0, 450]
    sampler = TemperatureSampler(sizes, temperature=2.0, num_samples=20000, seed=3)
    idx = list(sampler)
    assert len(idx) == 20000 and min(idx) >= 0 and max(idx) < 500
    by_task = Counter(0 if i < 50 else 2 for i in idx)
    expected = task_probabilities(sizes, 2.0)
    assert by_task[0] / 20000 == pytest.approx(expected[0].item(), abs=0.02)
    assert list(TemperatureSampler(sizes, 2.0, 20000, seed=3)) == idx
    sampler.set_epoch(1)
    assert list(sampler) != idx


def test_small_task_is_cycled_without_replacement():
    sampler = TemperatureSampler([5, 5], temperature=1.0, num_samples=1000, seed=0)
    first_task = [i for i in sampler if i < 5]
    for start in range(0, len(first_task) - 5, 5):
        assert sorted(first_task[start : start + 5]) == [0, 1, 2, 3, 4]
