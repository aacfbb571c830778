"""Quality gate after the loop (seed 002): deploy only an ensemble that clears a macro-F1 bar.

The final ensemble is scored on the held-out test split: that score is the gate's measurement.
Below `f1_threshold` the members are retrained on the final labels up to `max_attempts` times,
each attempt with a different seed and a scaled learning rate (a different schedule is what
gives a retry a chance to land elsewhere). Selection is honest: attempts are compared on the
dev split only (retries stop early once one clears the bar on dev), the loop's own models
included, and only the chosen one is scored on test, once; that test score is the verdict. A
test split that picked the winner among several attempts would report the luckiest draw, not
what the deployed model will do.

If the chosen models still fall short, one alert line is appended to metrics/alerts.jsonl and
POSTed to a webhook when one is configured, and the run is marked not deployable. A gate failure
is an outcome, not an error: the stage succeeds and records it, so `dvc repro` carries on to the
bundle and report, and the registry refuses to promote it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sentiloop import ensemble
from sentiloop.errors import SentiloopError
from sentiloop.evaluation import macro_f1 as _macro_f1
from sentiloop.models.base import SentimentModel, build_model
from sentiloop.settings.ops import Gate as GateConfig

log = logging.getLogger(__name__)

WEBHOOK_ENV = "SENTILOOP_ALERT_WEBHOOK"


def _is_lr_key(key: str) -> bool:
    """Config keys that are learning rates, whatever a member calls them."""
    key = key.lower()
    return key == "lr" or key.endswith("_lr") or "learning_rate" in key


class GateError(SentiloopError, ValueError):
    """The gate cannot score: no models, an empty test split, labels outside the classes."""


PREDICT_CHUNK = 2048  # texts per predict_proba call when the gate scores retrained members


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # int indices into classes


@dataclass
class GateResult:
    passed: bool
    f1: float  # test macro-F1 of the selected models (the verdict)
    threshold: float
    attempts: int  # retraining attempts made (0 when the final models passed)
    history: list[dict[str, Any]]  # one record per attempt: attempt, dev_f1, test_f1 (None unless scored)
    models: dict[str, SentimentModel]  # the selected models
    selected_attempt: int
    dev_f1: float | None = None  # dev macro-F1 of the selected models (what chose them)
    selected_on: str = "none"  # "dev" when retries were compared on dev; "none" when no retry ran
    alert: dict[str, Any] | None = None
    webhook: dict[str, Any] = field(default_factory=dict)

    @property
    def deployable(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "deployable": self.deployable,
            "f1": round(self.f1, 6),
            "dev_f1": None if self.dev_f1 is None else round(self.dev_f1, 6),
            "threshold": self.threshold,
            "attempts": self.attempts,
            "selected_attempt": self.selected_attempt,
            "selected_on": self.selected_on,
            "test_evaluations": sum(h.get("test_f1") is not None for h in self.history),
            "history": self.history,
            "alerted": self.alert is not None,
            "webhook": self.webhook,
        }


def macro_f1(labels: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    """The ensemble's macro-F1 from its probabilities (sentiloop.evaluation's definition)."""
    return _macro_f1(labels, np.asarray(proba).argmax(axis=1), n_classes)


def scaled_config(config: Mapping[str, Any], scale: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A member config with every learning-rate key multiplied by `scale`; returns (config, changes)."""
    out = dict(config)
    changes = {}
    for key, value in config.items():
        if _is_lr_key(str(key)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value) * float(scale)
            changes[key] = [value, out[key]]
    return out, changes


def retrain(
    models: Mapping[str, SentimentModel], train: Split, dev: Split | None, attempt: int, cfg: GateConfig
) -> tuple[dict[str, SentimentModel], dict[str, Any]]:
    """Retrain every member with the attempt's seed and learning-rate scale."""
    scale = cfg.lr_scales[(attempt - 1) % len(cfg.lr_scales)]
    new: dict[str, SentimentModel] = {}
    info: dict[str, Any] = {"lr_scale": scale, "members": {}}
    for name, old in models.items():
        config, changes = scaled_config(old.config, scale)
        seed = old.seed + attempt * cfg.seed_step
        model = build_model(old.kind, old.classes, config, language=old.language, seed=seed)
        model.fit(
            train.texts,
            train.labels,
            init_from=old if cfg.retrain_from == "final" else None,
            eval_set=(dev.texts, dev.labels) if dev is not None and len(dev.texts) else None,
        )
        new[name] = model
        info["members"][name] = {"seed": seed, "lr_changes": changes, "strategy": model.strategy_}
    return new, info


def run_gate(
    models: Mapping[str, SentimentModel],
    weights: Mapping[str, float],
    *,
    train: Split,
    dev: Split | None,
    test: Split,
    cfg: GateConfig,
    retrain_fn: Callable[..., tuple[dict[str, SentimentModel], dict[str, Any]]] = retrain,
    initial_proba: np.ndarray | None = None,
    initial_dev_proba: np.ndarray | None = None,
) -> GateResult:
    """Score the final ensemble on `test`; below the bar, retrain up to `cfg.max_attempts` times,
    choose among all attempts (the final models are attempt 0) on `dev` macro-F1 only, and score
    the chosen one on `test` once.

    Retries stop early when an attempt's dev macro-F1 clears the bar. Without dev rows there is
    nothing honest to choose on, so no retry is made (recorded in the history).
    `initial_proba` / `initial_dev_proba`: the final ensemble's test / dev probabilities when
    already computed (predict_final wrote them), so the common pass case predicts nothing."""
    if not models:
        raise GateError("the gate needs at least one model")
    if len(test.texts) == 0:
        raise GateError("the test split is empty: nothing to gate on (raise split.test_size or use more rows)")
    n_classes = next(iter(models.values())).n_classes
    w = ensemble.normalised_weights(list(models), weights)
    threshold = cfg.f1_threshold
    has_dev = dev is not None and len(dev.texts) > 0

    def proba(ms, split: Split, given: np.ndarray | None = None) -> np.ndarray:
        if given is not None:
            if len(given) != len(split.texts):
                raise ValueError(f"given probabilities have {len(given)} rows, the split {len(split.texts)}")
            return given
        return ensemble.predict_proba(ms, w, split.texts, chunk_size=PREDICT_CHUNK)

    test_f1 = macro_f1(test.labels, proba(models, test, initial_proba), n_classes)
    dev_f1 = macro_f1(dev.labels, proba(models, dev, initial_dev_proba), n_classes) if has_dev else None
    history = [{"attempt": 0, "dev_f1": _round(dev_f1), "test_f1": round(test_f1, 6), "what": "final iteration models"}]
    log.info("gate: final ensemble test macro-F1 %.4f (threshold %.4f)", test_f1, threshold)
    if test_f1 >= threshold or cfg.max_attempts == 0:
        return GateResult(
            passed=test_f1 >= threshold,
            f1=test_f1,
            threshold=threshold,
            attempts=0,
            history=history,
            models=dict(models),
            selected_attempt=0,
            dev_f1=dev_f1,
        )
    if not has_dev:
        history[0]["note"] = "no dev rows: retries need them to choose on (test never chooses)"
        return GateResult(
            passed=False,
            f1=test_f1,
            threshold=threshold,
            attempts=0,
            history=history,
            models=dict(models),
            selected_attempt=0,
            dev_f1=None,
        )

    best_models, best_dev, best_attempt = dict(models), dev_f1, 0
    attempts = 0
    while attempts < cfg.max_attempts:
        attempts += 1
        candidate, info = retrain_fn(models, train, dev, attempts, cfg)
        f1 = macro_f1(dev.labels, proba(candidate, dev), n_classes)
        history.append({"attempt": attempts, "dev_f1": round(f1, 6), "test_f1": None, **info})
        log.info("gate: attempt %d/%d dev macro-F1 %.4f", attempts, cfg.max_attempts, f1)
        if f1 > best_dev:
            best_models, best_dev, best_attempt = candidate, f1, attempts
        if f1 >= threshold:
            break
    if best_attempt != 0:  # the one look at test for a retrained ensemble
        test_f1 = macro_f1(test.labels, proba(best_models, test), n_classes)
        history[best_attempt]["test_f1"] = round(test_f1, 6)
    log.info("gate: selected attempt %d on dev (%.4f); test macro-F1 %.4f", best_attempt, best_dev, test_f1)
    return GateResult(
        passed=test_f1 >= threshold,
        f1=test_f1,
        threshold=threshold,
        attempts=attempts,
        history=history,
        models=best_models,
        selected_attempt=best_attempt,
        dev_f1=best_dev,
        selected_on="dev",
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def build_alert(result: GateResult, run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "alert_type": "MODEL_PERFORMANCE_FAILURE",
        "severity": "critical",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "f1": round(result.f1, 6),
        "threshold": result.threshold,
        "attempts": result.attempts,
        "selected_attempt": result.selected_attempt,
        "history": [
            {"attempt": h["attempt"], "dev_f1": h.get("dev_f1"), "test_f1": h.get("test_f1")} for h in result.history
        ],
        "message": (
            f"ensemble test macro-F1 {result.f1:.4f} is below {result.threshold:.4f} "
            f"after {result.attempts} retraining attempt(s) (chosen on dev); not deployable"
        ),
        "run": dict(run or {}),
    }


def append_alert(path: str | Path, alert: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(alert, sort_keys=True, default=str) + "\n")


def post_webhook(url: str, payload: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """POST `payload` as JSON; never raises: returns {"sent", "status"|"error"}."""
    body = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "sentiloop-gate"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return {"sent": True, "status": resp.status}
    except urllib.error.HTTPError as e:
        log.warning("alert webhook answered HTTP %s", e.code)
        return {"sent": False, "status": e.code, "error": f"HTTP {e.code}"}
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        log.warning("alert webhook failed: %s", reason)
        return {"sent": False, "error": f"{type(e).__name__}: {reason}"}


def raise_alert(
    result: GateResult,
    *,
    alerts_path: str | Path,
    run: Mapping[str, Any] | None = None,
    webhook_url: str | None = None,
    timeout: float = 5.0,
) -> GateResult:
    """Append the alert line and POST it when a webhook is set; fills result.alert/.webhook."""
    alert = build_alert(result, run)
    append_alert(alerts_path, alert)
    result.alert = alert
    url = webhook_url if webhook_url is not None else os.environ.get(WEBHOOK_ENV, "")
    if url:
        outcome = post_webhook(url, alert, timeout)
        result.webhook = {"configured": True, "failures": 0 if outcome["sent"] else 1, **outcome}
    else:
        result.webhook = {"configured": False, "sent": False, "failures": 0}
    return result


def run_info() -> dict[str, Any]:
    """Where the gate ran: enough to find the run behind an alert."""
    info: dict[str, Any] = {"host": socket.gethostname()}
    for env in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "CI_PIPELINE_ID", "GITHUB_RUN_ID"):
        if os.environ.get(env):
            info[env.lower()] = os.environ[env]
    try:
        import subprocess

        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        if rev.returncode == 0:
            info["git_rev"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --- the stage ---------------------------------------------------------------------------------


def read_split(store_db: Path, split: str, classes: Sequence[str], chunk_size: int) -> Split:
    """A split's texts and current labels; rows the correction rule set aside are left out, as
    in the loop's own training (they are never set aside outside train)."""
    from sentiloop.store import iter_chunks

    index = {c: i for i, c in enumerate(classes)}
    texts: list[str] = []
    labels: list[int] = []
    for frame in iter_chunks(
        store_db, ("text", "current_label"), where="split = ? AND aside = 0", params=(split,), chunk_size=chunk_size
    ):
        unknown = set(frame["current_label"]) - set(index)
        if unknown:
            raise GateError(f"{store_db}: {split} labels {sorted(unknown)} are not in {list(classes)}")
        texts.extend(frame["text"].astype(str))
        labels.extend(frame["current_label"].map(index))
    return Split(texts, np.asarray(labels, dtype=np.int64))


def initial_proba(
    predictions: Path, store_db: Path, classes: Sequence[str], chunk_size: int, n_test: int, split: str = "test"
) -> np.ndarray | None:
    """The final ensemble's probabilities on `split` as predict_final wrote them (saves
    re-predicting); None when the file does not line up with the store's rows of that split."""
    import pyarrow.parquet as pq

    from sentiloop.store import iter_chunks

    if not Path(predictions).exists():
        return None
    cols = [f"p_ens_{c}" for c in classes]
    table = pq.read_table(predictions, columns=["id", "split", *cols])
    frame = table.to_pandas()
    frame = frame[frame["split"] == split].set_index("id")
    ids = [
        i
        for chunk in iter_chunks(store_db, ("id",), where="split = ?", params=(split,), chunk_size=chunk_size)
        for i in chunk["id"].astype(str)
    ]
    if len(ids) != n_test or not set(ids) <= set(frame.index):
        return None
    return frame.loc[ids, cols].to_numpy(dtype=np.float64)
