"""The word-sentiment lexicon member: a dictionary of per-class word scores.

A word's score for a class is its smoothed log-probability under that class minus its mean over
classes (a centred naive-Bayes log-odds), optionally seeded from a published lexicon (VADER's for
English). A sentence's class scores are the length-normalised sum of its words' scores; a small
multinomial logistic regression on those k numbers turns them into calibrated probabilities.

Retraining (seed 001): with `strategy: blend`, a word present in the previous dictionary keeps
`old_weight` (0.7) of its old score and takes 0.3 of the score learned from the corrected labels;
new domain words enter when seen at least `min_count` times. The share of the dictionary that
was added, dropped or changed its strongest class is `dict_change_rate_`, one of the loop's
convergence signals.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import sparse

from sentiloop.models.base import ModelError, SentimentModel
from sentiloop.text.tokenize import tokenize_many


def vader_lexicon_path() -> Path | None:
    try:
        from importlib.metadata import distribution

        path = Path(distribution("vaderSentiment").locate_file("vaderSentiment/vader_lexicon.txt"))
    except Exception:
        return None
    return path if path.exists() else None


def read_seed_lexicon(path: str | Path) -> dict[str, float]:
    """word<TAB>valence[<TAB>...] lines; valence on any symmetric scale (VADER: -4..4)."""
    out: dict[str, float] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            try:
                out[parts[0].strip().lower()] = float(parts[1])
            except ValueError:
                continue
    if not out:
        raise ModelError(f"seed lexicon {path} has no 'word<TAB>score' lines")
    scale = max(abs(v) for v in out.values()) or 1.0
    return {w: v / scale for w, v in out.items()}


class LexiconModel(SentimentModel):
    kind = "lexicon"

    def __init__(self, classes, config=None, *, language="en", seed=0):
        super().__init__(classes, config, language=language, seed=seed)
        self.words_: list[str] = []
        self.scores_: np.ndarray | None = None  # (V, k)
        self.counts_: np.ndarray | None = None  # (V, k) label counts behind the scores
        self.calib_coef_: np.ndarray | None = None  # (k, k)
        self.calib_intercept_: np.ndarray | None = None
        self.dict_change_rate_: float | None = None
        self._index: dict[str, int] = {}

    # --- fitting ----------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: np.ndarray, *, init_from=None, eval_set=None):
        labels = np.asarray(labels, dtype=np.int64)
        if len(texts) != len(labels):
            raise ModelError(f"{len(texts)} texts but {len(labels)} labels")
        if len(texts) == 0:
            raise ModelError("cannot fit a lexicon on no texts")
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ModelError(f"labels must be in [0, {self.n_classes}); got {labels.min()}..{labels.max()}")
        if init_from is not None and not isinstance(init_from, LexiconModel):
            raise ModelError(f"lexicon can only retrain from a lexicon, not {type(init_from).__name__}")
        cfg = self.config
        tokens = self._tokenize(texts)
        counts = self._count(tokens, labels)
        min_count = int(cfg["min_count"])
        totals = {w: int(c.sum()) for w, c in counts.items()}
        keep = [w for w, t in totals.items() if t >= min_count]
        keep.sort(key=lambda w: (-totals[w], w))
        keep = keep[: int(cfg["max_vocab"])]
        new_counts = np.array([counts[w] for w in keep], dtype=np.float64).reshape(-1, self.n_classes)
        new_scores = self._log_odds(new_counts)

        strategy = cfg["strategy"] if init_from is not None else "initial"
        if strategy == "blend":
            words, scores, cnts = self._blend(init_from, keep, new_scores, new_counts, float(cfg["old_weight"]))
        elif strategy in ("initial", "scratch"):
            words, scores, cnts = keep, new_scores, new_counts
            seed = self._seed_scores()
            if seed:
                words, scores, cnts = self._add_seed(words, scores, cnts, seed, float(cfg["seed_weight"]))
        else:
            raise ModelError(f"unknown lexicon strategy {strategy!r}: use blend or scratch")

        self.words_ = list(words)
        self.scores_ = np.asarray(scores, dtype=np.float32)
        self.counts_ = np.asarray(cnts, dtype=np.float32)
        self._index = {w: i for i, w in enumerate(self.words_)}
        self.dict_change_rate_ = dictionary_change_rate(init_from, self) if init_from is not None else None
        self.strategy_ = strategy
        self.n_train_samples_ = int(len(labels))

        # calibration: on the eval set when given, else on the training data
        if eval_set is not None and len(eval_set[0]) >= 2 * self.n_classes:
            cal_x = self._raw_scores(self._tokenize(eval_set[0]))
            cal_y = np.asarray(eval_set[1], dtype=np.int64)
        else:
            cal_x, cal_y = self._raw_scores(tokens), labels
        self._fit_calibration(cal_x, cal_y)
        self.history_ = [
            {
                "step": "fit",
                "strategy": strategy,
                "vocab": len(self.words_),
                "new_words": int(len(set(keep) - set(init_from.words_))) if init_from is not None else len(keep),
                "dict_change_rate": self.dict_change_rate_,
            }
        ]
        return self

    def _tokenize(self, texts):
        return list(tokenize_many(texts, self.language, negation=bool(self.config["negation"])))

    def _count(self, tokens, labels) -> dict[str, np.ndarray]:
        counts: dict[str, np.ndarray] = {}
        k = self.n_classes
        for toks, y in zip(tokens, labels):
            for w in set(toks):
                c = counts.get(w)
                if c is None:
                    c = counts[w] = np.zeros(k, dtype=np.int64)
                c[y] += 1
        return counts

    def _log_odds(self, counts: np.ndarray) -> np.ndarray:
        if counts.size == 0:
            return np.zeros((0, self.n_classes))
        a = float(self.config["smoothing"])
        p = (counts + a) / (counts.sum(axis=0, keepdims=True) + a * counts.shape[0])
        logp = np.log(p)
        return logp - logp.mean(axis=1, keepdims=True)

    def _blend(self, old: "LexiconModel", keep, new_scores, new_counts, w_old):
        old._check_fitted(old.scores_ is not None)
        if old.classes != self.classes:
            raise ModelError(f"previous lexicon has classes {old.classes}, this one {self.classes}")
        new_index = {w: i for i, w in enumerate(keep)}
        words = list(old.words_)
        scores = old.scores_.astype(np.float64).copy()
        cnts = old.counts_.astype(np.float64).copy()
        for i, w in enumerate(words):
            j = new_index.get(w)
            if j is not None:
                scores[i] = w_old * scores[i] + (1 - w_old) * new_scores[j]
                cnts[i] = new_counts[j]
        old_set = set(words)
        added = [j for j, w in enumerate(keep) if w not in old_set]
        if added:
            words += [keep[j] for j in added]
            scores = np.vstack([scores, new_scores[added]])
            cnts = np.vstack([cnts, new_counts[added]])
        return words, scores, cnts

    def _seed_scores(self) -> dict[str, np.ndarray]:
        src = self.config.get("seed_lexicon")
        if src in (None, "", "none", False):
            return {}
        if src == "auto":
            if self.language != "en":
                return {}
            path = vader_lexicon_path()
            if path is None:
                return {}
        else:
            path = Path(src)
            if not path.exists():
                raise ModelError(f"models.lexicon.seed_lexicon: {path} does not exist")
        valence = read_seed_lexicon(path)
        direction = np.zeros(self.n_classes)
        names = [c.lower() for c in self.classes]
        if "positive" not in names or "negative" not in names:
            return {}
        direction[names.index("positive")] = 1.0
        direction[names.index("negative")] = -1.0
        direction -= direction.mean()
        return {w: v * direction for w, v in valence.items()}

    def _add_seed(self, words, scores, cnts, seed, weight):
        words = list(words)
        index = {w: i for i, w in enumerate(words)}
        scores = np.array(scores, dtype=np.float64).reshape(-1, self.n_classes)
        extra_w, extra_s = [], []
        for w, s in seed.items():
            i = index.get(w)
            if i is not None:
                scores[i] += weight * s
            else:
                extra_w.append(w)
                extra_s.append(weight * s)
        if extra_w:
            words += extra_w
            scores = np.vstack([scores, np.array(extra_s)])
            cnts = np.vstack([np.asarray(cnts).reshape(-1, self.n_classes), np.zeros((len(extra_w), self.n_classes))])
        return words, scores, cnts

    # --- prediction -------------------------------------------------------------------
    def _raw_scores(self, tokens) -> np.ndarray:
        index = self._index
        indptr, indices = [0], []
        for toks in tokens:
            ids = {index[t] for t in toks if t in index}
            indices.extend(ids)
            indptr.append(len(indices))
        x = sparse.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(tokens), len(self.words_))
        )
        lengths = np.maximum(np.diff(indptr), 1).astype(np.float32)
        return np.asarray(x @ self.scores_) / np.sqrt(lengths)[:, None]

    def _fit_calibration(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        present = np.unique(y)
        if len(present) < 2:
            raise ModelError("calibration needs at least two classes present in the labels")
        lr = LogisticRegression(C=10.0, max_iter=500)
        lr.fit(x, y)
        coef = np.zeros((self.n_classes, self.n_classes))
        intercept = np.full(self.n_classes, -30.0)  # a class absent from the labels gets ~0 probability
        if len(present) == 2 and self.n_classes >= 2:
            coef[present[1]], intercept[present[1]] = lr.coef_[0], lr.intercept_[0]
            coef[present[0]], intercept[present[0]] = 0.0, 0.0
        else:
            coef[present], intercept[present] = lr.coef_, lr.intercept_
        self.calib_coef_, self.calib_intercept_ = coef, intercept

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba_tokens(self._tokenize(texts))

    def predict_proba_tokens(self, tokens: Sequence[Sequence[str]]) -> np.ndarray:
        """Probabilities from already tokenized text (lets callers tokenize once, score many)."""
        self._check_fitted(self.scores_ is not None)
        z = self._raw_scores(tokens) @ self.calib_coef_.T + self.calib_intercept_
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def top_words(self, n: int = 20) -> dict[str, list[tuple[str, float]]]:
        """The n words that push hardest towards each class (for reports)."""
        self._check_fitted(self.scores_ is not None)
        out = {}
        for k, cls in enumerate(self.classes):
            order = np.argsort(-self.scores_[:, k])[:n]
            out[cls] = [(self.words_[i], float(self.scores_[i, k])) for i in order]
        return out

    # --- persistence ------------------------------------------------------------------
    def _extra_meta(self):
        return {
            "calib_coef": self.calib_coef_,
            "calib_intercept": self.calib_intercept_,
            "dict_change_rate": self.dict_change_rate_,
            "vocab": len(self.words_),
        }

    def _save_weights(self, directory: Path) -> None:
        self._check_fitted(self.scores_ is not None)
        with open(directory / "dictionary.tsv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            w.writerow(["word"] + [f"score_{c}" for c in self.classes] + [f"count_{c}" for c in self.classes])
            for i, word in enumerate(self.words_):
                w.writerow([word] + [f"{s:.9g}" for s in self.scores_[i]] + [int(c) for c in self.counts_[i]])

    def _load_weights(self, directory: Path, extra: dict) -> None:
        words, scores, counts = [], [], []
        k = self.n_classes
        with open(directory / "dictionary.tsv", encoding="utf-8", newline="") as fh:
            r = csv.reader(fh, delimiter="\t")
            next(r)
            for row in r:
                words.append(row[0])
                scores.append([float(x) for x in row[1 : 1 + k]])
                counts.append([float(x) for x in row[1 + k : 1 + 2 * k]])
        self.words_ = words
        self.scores_ = np.asarray(scores, dtype=np.float32).reshape(-1, k)
        self.counts_ = np.asarray(counts, dtype=np.float32).reshape(-1, k)
        self._index = {w: i for i, w in enumerate(words)}
        self.calib_coef_ = np.asarray(extra["calib_coef"], dtype=np.float64)
        self.calib_intercept_ = np.asarray(extra["calib_intercept"], dtype=np.float64)
        self.dict_change_rate_ = extra.get("dict_change_rate")


def dictionary_change_rate(old: LexiconModel, new: LexiconModel) -> float:
    """Share of the union of both dictionaries that was added, dropped, or changed strongest class."""
    old_top = dict(zip(old.words_, np.argmax(old.scores_, axis=1))) if old.scores_ is not None else {}
    new_top = dict(zip(new.words_, np.argmax(new.scores_, axis=1)))
    union = set(old_top) | set(new_top)
    if not union:
        return 0.0
    changed = sum(1 for w in union if old_top.get(w, -1) != new_top.get(w, -1))
    return changed / len(union)
