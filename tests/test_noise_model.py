"""The noise model on scores with a known answer: planted class-conditional noise, known flips."""

from __future__ import annotations

import numpy as np
import pytest

from sentiloop import noise_model
from sentiloop.noise_model import NoiseModelError


def _scores(n: int, k: int, T: np.ndarray, seed: int, sharpness: float = 3.0):
    """True classes, noisy labels drawn through T, and the scores a model trained on the noisy
    labels would give: P(noisy | x) = q(x) @ T, with q a reasonably sure clean-class score."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += sharpness
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    noisy = np.array([rng.choice(k, p=T[t]) for t in true])
    return true, noisy, q @ T


@pytest.mark.parametrize(
    "T",
    [
        np.array([[0.7, 0.3], [0.3, 0.7]]),  # 30% symmetric
        np.array([[0.9, 0.1], [0.4, 0.6]]),  # asymmetric: positives mislabelled
        np.array([[0.8, 0.2, 0.0], [0.15, 0.7, 0.15], [0.0, 0.2, 0.8]]),  # neighbour confusion
    ],
)
def test_recovers_the_noise_matrix_and_rate(T):
    true, noisy, p = _scores(6000, len(T), T, seed=3)
    est = noise_model.estimate(p, noisy)
    assert np.abs(est.matrix - T).max() < 0.08, est.matrix
    assert est.noise_rate == pytest.approx(float(np.mean(true != noisy)), abs=0.04)
    assert np.allclose(est.matrix.sum(axis=1), 1.0)


def test_posterior_finds_the_planted_flips():
    T = np.array([[0.7, 0.3], [0.3, 0.7]])
    true, noisy, p = _scores(6000, 2, T, seed=5)
    est = noise_model.estimate(p, noisy)
    post = est.posterior(p, noisy)
    p_wrong = 1 - post[np.arange(len(noisy)), noisy]
    sure = p_wrong >= 0.9
    assert sure.sum() > 500
    assert np.mean(true[sure] != noisy[sure]) >= 0.9  # what it is sure of is wrong
    # the raw scores are flattened by the noise: few reach 0.9 against the label
    raw_sure = (1 - p[np.arange(len(noisy)), noisy]) >= 0.9
    assert raw_sure.sum() < sure.sum() / 2


def test_no_noise_means_almost_nothing_is_called_wrong():
    T = np.eye(2)
    true, noisy, p = _scores(4000, 2, T, seed=8)
    est = noise_model.estimate(p, noisy)
    post = est.posterior(p, noisy)
    assert est.noise_rate < 0.03
    assert np.mean(post[np.arange(len(noisy)), noisy] < 0.5) < 0.01


def test_the_diagonal_stays_dominant():
    T = noise_model.dominant(np.array([[0.4, 0.6], [0.1, 0.9]]))
    assert T[0, 0] > T[0, 1] and np.allclose(T.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        (np.ones((3, 1)), [0, 0, 0], "must be \\(n, k >= 2\\)"),
        (np.full((3, 2), 0.5), [0, 1], "2 labels for 3 rows"),
        (np.full((3, 2), 0.5), [0, 1, 2], "class indices in \\[0, 2\\)"),
        (np.array([[np.nan, 1.0], [0.5, 0.5]]), [0, 1], "NaN"),
    ],
)
def test_bad_inputs_are_refused(probs, labels, message):
    with pytest.raises(NoiseModelError, match=message):
        noise_model.estimate(probs, np.asarray(labels))
