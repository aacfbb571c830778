"""Planted label noise: exact counts with a seed, matrices realised, bad input refused."""

import numpy as np
import pytest

from sentiloop.noise import (
    NoiseError,
    check_noise_matrix,
    plant,
    plant_matrix,
    plant_symmetric,
    realised_matrix,
    symmetric_matrix,
)


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_symmetric_flips_exact_count_per_class():
    y = _labels([600, 400])
    out = plant_symmetric(y, 2, 0.3, seed=7)
    assert out.n_flipped == 180 + 120
    assert out.flipped[y == 0].sum() == 180
    assert out.flipped[y == 1].sum() == 120
    # binary: a flip is the other class
    assert np.all(out.labels[out.flipped] == 1 - y[out.flipped])
    assert np.array_equal(out.flipped, out.labels != y)
    assert out.rate == pytest.approx(0.3)


def test_symmetric_same_seed_same_rows_other_seed_other_rows():
    y = _labels([500, 500])
    a = plant_symmetric(y, 2, 0.3, seed=1)
    b = plant_symmetric(y, 2, 0.3, seed=1)
    c = plant_symmetric(y, 2, 0.3, seed=2)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.flipped, c.flipped)
    assert a.n_flipped == c.n_flipped


def test_symmetric_multiclass_spreads_flips_over_other_classes():
    y = _labels([300, 300, 300])
    out = plant_symmetric(y, 3, 0.2, seed=0)
    m = realised_matrix(y, out.labels, 3)
    np.testing.assert_allclose(m, symmetric_matrix(3, 0.2), atol=1 / 300 + 1e-12)
    assert np.allclose(m.sum(axis=1), 1)


def test_symmetric_rate_zero_changes_nothing():
    y = _labels([10, 20])
    out = plant_symmetric(y, 2, 0.0, seed=0)
    assert out.n_flipped == 0
    assert np.array_equal(out.labels, y)
    assert out.labels is not y


def test_matrix_is_realised_within_one_row_per_cell():
    y = _labels([1000, 700, 300])
    T = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.0, 0.4, 0.6]])
    out = plant_matrix(y, T, seed=3)
    m = realised_matrix(y, out.labels, 3)
    for c, n in enumerate([1000, 700, 300]):
        np.testing.assert_allclose(m[c], T[c], atol=1 / n + 1e-12)
    # a zero entry is never used
    assert not np.any((y == 2) & (out.labels == 0))
    assert np.array_equal(out.flipped, out.labels != y)


def test_matrix_orientation_rows_are_true_classes():
    # every true 0 becomes 1, true 1 stays: asymmetric on purpose
    y = _labels([50, 50])
    out = plant_matrix(y, [[0.0, 1.0], [0.0, 1.0]], seed=0)
    assert np.all(out.labels == 1)
    assert out.n_flipped == 50


def test_matrix_noise_is_seeded():
    y = _labels([200, 200])
    T = [[0.7, 0.3], [0.25, 0.75]]
    assert np.array_equal(plant_matrix(y, T, seed=5).labels, plant_matrix(y, T, seed=5).labels)
    assert not np.array_equal(plant_matrix(y, T, seed=5).labels, plant_matrix(y, T, seed=6).labels)


def test_plant_dispatch_and_errors():
    y = _labels([100, 100])
    assert plant(y, 2, rate=0.1, seed=0).n_flipped == 20
    assert plant(y, 2, kind="matrix", matrix=[[0.9, 0.1], [0.1, 0.9]], seed=0).n_flipped == 20
    with pytest.raises(NoiseError, match="needs a noise matrix"):
        plant(y, 2, kind="matrix", seed=0)
    with pytest.raises(NoiseError, match="unknown noise kind"):
        plant(y, 2, kind="gaussian", seed=0)
    with pytest.raises(NoiseError, match="2x2 but there are 3"):
        plant(_labels([5, 5, 5]), 3, kind="matrix", matrix=[[1, 0], [0, 1]], seed=0)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_rate_out_of_range_is_refused(rate):
    with pytest.raises(NoiseError, match=r"\[0, 1\)"):
        plant_symmetric(_labels([5, 5]), 2, rate, seed=0)


@pytest.mark.parametrize(
    "matrix, message",
    [
        ([[0.9, 0.1]], "square"),
        ([[1.0]], "at least two"),
        ([[0.9, 0.2], [0.1, 0.9]], "sum to 1"),
        ([[1.1, -0.1], [0.0, 1.0]], ">= 0"),
        ([[np.nan, 1.0], [0.0, 1.0]], "finite"),
    ],
)
def test_bad_matrix_is_refused(matrix, message):
    with pytest.raises(NoiseError, match=message):
        check_noise_matrix(matrix)


def test_bad_labels_are_refused():
    with pytest.raises(NoiseError, match=r"lie in \[0, 2\)"):
        plant_symmetric(np.array([0, 1, 2]), 2, 0.1, seed=0)
    with pytest.raises(NoiseError, match="integer class indices"):
        plant_symmetric(np.array([0.0, 1.0]), 2, 0.1, seed=0)
    with pytest.raises(NoiseError, match="1-D"):
        plant_symmetric(np.zeros((2, 2), dtype=int), 2, 0.1, seed=0)
    with pytest.raises(NoiseError, match=">= 2"):
        plant_symmetric(np.zeros(3, dtype=int), 1, 0.1, seed=0)


def test_realised_matrix_transposes_to_cleanlab_orientation():
    from cleanlab.benchmarking.noise_generation import generate_noisy_labels

    y = _labels([500, 500])
    T = np.array([[0.8, 0.2], [0.4, 0.6]])  # ours: rows = true
    np.random.seed(0)
    s = generate_noisy_labels(y, T.T)  # cleanlab: columns = true
    np.testing.assert_allclose(realised_matrix(y, s, 2), T, atol=0.01)
