"""How noisy are the given labels, and how likely is each one wrong?

The correction rule needs two numbers a raw ensemble probability cannot give: how much noise
there is (so it neither under- nor over-corrects), and, per row, the probability that the given
label is wrong *given that label*. Models trained on noisy labels learn P(noisy label | x), which
is flattened by the noise: a 0.75 from a model trained under 30% symmetric noise may well be a
near-certain row. Hence three steps, all on out-of-fold scores of the train rows and always
against the *original* labels (so a row flipped in an earlier iteration is judged afresh and may
revert):

1. anchors: per class, the `anchor_share` of rows the models are surest belong to it; the share of
   each given label among them is a first estimate of the noise matrix T[true, given];
2. forward calibration: clean-class scores q(x) = softmax(a * log p(x) + b) with one temperature
   `a` and a bias per class, fitted so that q(x) @ T explains the given labels (maximum
   likelihood of the noisy labels through the noise matrix, as in forward loss correction);
3. EM: T re-estimated from the posteriors of the true class, q refitted, `em_steps` times. T's
   diagonal is kept dominant in its row (a class is more often labelled as itself than as any
   other), which is what makes T identifiable from the data.

The posterior P(true = j | x, given = i) is proportional to q_j(x) * T[j, i]; the estimated
true class mix is the mean of q; the estimated noise rate is the expected share of wrong labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from sentiloop.errors import SentiloopError

EPS = 1e-6
MIN_DIAGONAL_MARGIN = 0.02  # T[j, j] stays at least this far above any other entry of row j


class NoiseModelError(SentiloopError, ValueError):
    pass


@dataclass(frozen=True)
class NoiseEstimate:
    """The fitted noise model (T rows = true class, columns = given class)."""

    matrix: np.ndarray  # (k, k) T[true, given], rows sum to 1
    prior: np.ndarray  # (k,) estimated true class mix
    temperature: float  # a
    bias: np.ndarray  # (k,) b
    noise_rate: float  # expected share of given labels that are wrong
    n_rows: int

    def clean_scores(self, probs: np.ndarray) -> np.ndarray:
        """q(x): the calibrated probability of each true class."""
        return _softmax(self.temperature * np.log(np.clip(probs, EPS, 1.0)) + self.bias)

    def posterior(self, probs: np.ndarray, given: np.ndarray) -> np.ndarray:
        """P(true class | x, given label), (n, k)."""
        q = self.clean_scores(probs)
        joint = q * self.matrix[:, given].T
        return joint / np.maximum(joint.sum(axis=1, keepdims=True), EPS)

    def to_dict(self, classes: list[str]) -> dict:
        return {
            "noise_rate": round(self.noise_rate, 6),
            "matrix": {
                c: {d: round(float(self.matrix[i, j]), 6) for j, d in enumerate(classes)} for i, c in enumerate(classes)
            },
            "prior": {c: round(float(self.prior[i]), 6) for i, c in enumerate(classes)},
            "temperature": round(self.temperature, 6),
            "bias": [round(float(v), 6) for v in self.bias],
            "n_rows": self.n_rows,
        }


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(probs: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise NoiseModelError(f"probabilities must be (n, k >= 2), got shape {probs.shape}")
    if len(given) != len(probs):
        raise NoiseModelError(f"{len(given)} labels for {len(probs)} rows of probabilities")
    if len(given) and (given.min() < 0 or given.max() >= probs.shape[1]):
        raise NoiseModelError(f"labels must be class indices in [0, {probs.shape[1]})")
    if not np.isfinite(probs).all():
        raise NoiseModelError("probabilities contain NaN or infinity")
    return probs, given


def anchor_matrix(probs: np.ndarray, given: np.ndarray, anchor_share: float) -> np.ndarray:
    """T[j, :] = the share of each given label among the rows most surely of class j."""
    n, k = probs.shape
    size = max(1, int(np.ceil(anchor_share * n)))
    T = np.zeros((k, k))
    for j in range(k):
        top = np.argsort(-probs[:, j], kind="stable")[:size]
        T[j] = np.bincount(given[top], minlength=k) / len(top)
    return dominant(T)


def dominant(T: np.ndarray) -> np.ndarray:
    """Each row normalised, with its diagonal raised above every other entry of the row.

    Without it, a class the models rarely predict can end with T[j, j] < T[j, i]: the labels
    would then be explained by swapping class names, which fits the data as well and is absurd."""
    T = np.clip(np.asarray(T, dtype=np.float64), EPS, None)
    T = T / T.sum(axis=1, keepdims=True)
    for j in range(len(T)):
        off = np.delete(T[j], j)
        if T[j, j] < off.max() + MIN_DIAGONAL_MARGIN:
            # move mass from the off-diagonal entries to the diagonal until it dominates
            need = off.max() + MIN_DIAGONAL_MARGIN - T[j, j]
            scale = max(0.0, 1.0 - need / max(off.sum(), EPS))
            row = T[j] * scale
            row[j] = 0.0
            row[j] = 1.0 - row.sum()
            T[j] = row
    return T / T.sum(axis=1, keepdims=True)


def _fit_calibration(logp: np.ndarray, given: np.ndarray, T: np.ndarray, start: np.ndarray) -> np.ndarray:
    """(a, b_1..b_k) maximising the likelihood of the given labels under softmax(a log p + b) @ T."""
    k = logp.shape[1]
    Tg = T[:, given].T  # (n, k): T[j, given_n]

    def loss_and_grad(theta):
        a, b = theta[0], theta[1:]
        q = _softmax(a * logp + b)
        lik = np.maximum((q * Tg).sum(axis=1), EPS)  # P(given_n | x_n)
        r = q * Tg / lik[:, None]  # posterior of the true class
        g_z = q - r  # d(-log lik)/dz
        n = len(logp)
        grad_a = float((g_z * logp).sum()) / n
        grad_b = g_z.sum(axis=0) / n
        return -float(np.log(lik).mean()), np.concatenate([[grad_a], grad_b])

    bounds = [(0.05, 50.0)] + [(-20.0, 20.0)] * k
    res = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 200})
    theta = res.x
    theta[1:] -= theta[1:].mean()  # b is defined up to a constant
    return theta


def estimate(probs: np.ndarray, given: np.ndarray, *, anchor_share: float = 0.05, em_steps: int = 20) -> NoiseEstimate:
    """Fit the noise model on out-of-fold probabilities `probs` (n, k) and given labels (n,)."""
    probs, given = _check(probs, given)
    n, k = probs.shape
    if n == 0:
        raise NoiseModelError("no rows to estimate the noise from")
    if not 0 < anchor_share <= 1:
        raise NoiseModelError(f"anchor_share must be in (0, 1], got {anchor_share}")
    logp = np.log(np.clip(probs, EPS, 1.0))
    T = anchor_matrix(probs, given, anchor_share)
    theta = _fit_calibration(logp, given, T, np.concatenate([[1.0], np.zeros(k)]))
    onehot = np.eye(k)[given]
    for _ in range(int(em_steps)):
        q = _softmax(theta[0] * logp + theta[1:])
        joint = q * T[:, given].T
        r = joint / np.maximum(joint.sum(axis=1, keepdims=True), EPS)
        T_new = dominant((r.T @ onehot) / np.maximum(r.sum(axis=0)[:, None], EPS))
        theta = _fit_calibration(logp, given, T_new, theta)
        if np.abs(T_new - T).max() < 1e-4:
            T = T_new
            break
        T = T_new
    q = _softmax(theta[0] * logp + theta[1:])
    est = NoiseEstimate(
        matrix=T, prior=q.mean(axis=0), temperature=float(theta[0]), bias=theta[1:].copy(), noise_rate=0.0, n_rows=n
    )
    post = est.posterior(probs, given)
    rate = float(1.0 - post[np.arange(n), given].mean())
    return NoiseEstimate(
        matrix=T, prior=est.prior, temperature=est.temperature, bias=est.bias, noise_rate=rate, n_rows=n
    )
