import numpy as np
import pytest

from jaxgluon.scheduler import _rungs


@pytest.mark.parametrize("grace, rf, max_t, expected", [
    (1, 3, 81, (1, 3, 9, 27, 81)),
    (1, 3, 52, (1, 3, 9, 27, 52)),
    (2, 2, 20, (2, 4, 8, 16, 20)),
    (1, 4, 1, (1,)),
    (5, 3, 5, (5,)),
    (1, 1.5, 5, (1, 2, 3, 5)),
])
def test_rung_levels_table(grace, rf, max_t, expected):
    assert _rungs.rung_levels(grace, rf, max_t) == expected


@pytest.mark.parametrize("grace, rf, max_t", [(0, 3, 9), (1, 1, 9), (4, 3, 3), (1.5, 3, 9)])
def test_rung_levels_rejects_bad_arguments(grace, rf, max_t):
    with pytest.raises(ValueError):
        _rungs.rung_levels(grace, rf, max_t)


def test_bracket_levels_and_probabilities_follow_hyperband():
    levels = _rungs.rung_levels(1, 3, 81)
    assert _rungs.bracket_rung_levels(levels, 0) == levels
    assert _rungs.bracket_rung_levels(levels, 4) == (81,)
    with pytest.raises(ValueError):
        _rungs.bracket_rung_levels(levels, 5)
    probs = _rungs.bracket_probabilities(5, 3, 5)
    # Hyperband with eta=3, s_max=4 runs 81, 34 (27*5/4), 15, 8 (3*5/2), 5 configs per bracket
    expected = np.array([81, 27 * 5 / 4, 9 * 5 / 3, 3 * 5 / 2, 5])
    np.testing.assert_allclose(probs, expected / expected.sum())
    assert _rungs.bracket_probabilities(5, 3, 1).tolist() == [1.0]
    with pytest.raises(ValueError):
        _rungs.bracket_probabilities(5, 3, 6)


def test_sample_bracket_is_a_pure_function_with_the_right_frequencies():
    probs = _rungs.bracket_probabilities(4, 3, 3)
    draws = [_rungs.sample_bracket(probs, seed=7, trial_id=i) for i in range(3000)]
    assert draws == [_rungs.sample_bracket(probs, seed=7, trial_id=i) for i in range(3000)]
    freq = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(freq, probs, atol=0.03)


def test_num_to_promote():
    assert [_rungs.num_to_promote(n, 3) for n in range(1, 8)] == [0, 0, 1, 1, 1, 2, 2]
