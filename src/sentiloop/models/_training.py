"""Small pieces shared by the neural members: input checks, thread limits, early stopping.

Kept free of torch/tensorflow imports at module level so importing it costs nothing; the
torch helpers import torch inside the function.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Sequence

import numpy as np

from sentiloop.models.base import ModelError
from sentiloop.progress import bar


def check_xy(texts: Sequence[str], labels, n_classes: int) -> np.ndarray:
    """Validate a training set; return labels as int64."""
    if isinstance(texts, str):
        raise ModelError("texts must be a sequence of strings, not one string")
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ModelError(f"{len(texts)} texts but {len(labels)} labels")
    if len(texts) == 0:
        raise ModelError("cannot fit on zero rows")
    if labels.dtype.kind not in "iu":
        raise ModelError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ModelError(f"labels must be in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ModelError("texts must be a sequence of strings, not one string")
    return ["" if t is None else str(t) for t in texts]


def cpu_threads(config: dict[str, Any]) -> int:
    """Threads for torch/TF: config `threads`, else $SENTILOOP_THREADS, else 1. On this shared
    2-core machine one thread beat two for every member (MiniLM int8 featurization 78-85 vs
    39-55 sentences/s at load ~3; a BiLSTM epoch 0.5 s vs 30 s at load ~8)."""
    return max(1, int(config.get("threads") or os.environ.get("SENTILOOP_THREADS", 1)))


def torch_setup(config: dict[str, Any], seed: int):
    import torch

    n = cpu_threads(config)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    torch.manual_seed(seed)
    return torch


class torch_threads:
    """Temporarily run torch with `n` intra-op threads: tiny networks (the BERT head) are slower
    with 2 threads than with 1 on a shared 2-core machine (thread wake-ups dominate)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self):
        import torch

        self.prev = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.prev)


def torch_device(config: dict[str, Any]):
    """`device`: auto (CUDA when there is one), cpu, or cuda[:i]; cuda without a GPU is an error."""
    import torch

    want = str(config.get("device") or "auto")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device={want!r} but no CUDA GPU is available (use device=auto or cpu)")
    return torch.device(want)


class EarlyStopping:
    """Stop when the monitored loss has not improved by `min_delta` for `patience` epochs;
    keeps a copy of the best state so the model can be restored to it."""

    def __init__(self, patience: int = 2, min_delta: float = 0.0):
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.best_epoch = -1
        self.best_state = None
        self.bad = 0

    def step(self, value: float, epoch: int, state_fn) -> bool:
        """Record `value`; return True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = copy.deepcopy(state_fn())
            return False
        self.bad += 1
        return self.bad >= self.patience

    def end_epoch(self, history: list, rec: dict, epoch: int, state_fn, dev_proba=None, dev_y=None) -> bool:
        """Append the epoch's record, scored on the dev set when its probabilities are given;
        return True when training should stop (only a dev loss can stop it)."""
        if dev_proba is not None:
            rec["dev_loss"] = log_loss(dev_proba, dev_y)
            rec["dev_accuracy"] = float((dev_proba.argmax(1) == dev_y).mean())
        history.append(rec)
        return dev_proba is not None and self.step(rec["dev_loss"], epoch, state_fn)

    def restore_best(self, module, history: list) -> None:
        """Load the best epoch's state into `module` (if any epoch was scored) and record it."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
            history.append({"restored_best_epoch": self.best_epoch})


def epoch_bar(member: str, epochs: int):
    """A progress bar over a member's training epochs (silent without a terminal, see
    sentiloop.progress); call `epoch_done` after each epoch and `.close()` after the loop."""
    return bar(desc=f"train {member}", total=int(epochs), unit="epoch")


def epoch_done(progress, rec: dict) -> None:
    """Advance the epoch bar, showing the epoch's train and dev loss."""
    progress.set_postfix(
        {k: round(float(rec[k]), 4) for k in ("train_loss", "dev_loss") if rec.get(k) is not None}, refresh=False
    )
    progress.update(1)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def length_buckets(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None, pool: int = 50
) -> list[np.ndarray]:
    """Index batches of similar length: sort within pools of `pool` batches (shuffled when an
    rng is given, for training), so padding is small but batches still vary between epochs."""
    n = len(lengths)
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    batches: list[np.ndarray] = []
    span = batch_size * pool if rng is not None else n
    for s in range(0, n, span):
        chunk = idx[s : s + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if rng is not None:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


class OOMState:
    """The current micro-batch size and how often CUDA ran out of memory (recorded in history_)."""

    def __init__(self, micro_batch: int):
        self.micro_batch = int(micro_batch)
        self.events: list[dict[str, int]] = []


def run_with_oom_fallback(step, idx: np.ndarray, state: OOMState, on_oom=None) -> None:
    """Run `step(part, weight)` over `idx` in micro-batches of `state.micro_batch`.

    On a CUDA out-of-memory error the whole batch is retried with the micro-batch halved (so a
    training step stays one optimizer step: `weight` = len(part)/len(idx) scales the loss for
    gradient accumulation), `on_oom()` clears partial work (e.g. zero the gradients), and the
    smaller size is kept for the following batches. Gives up only at micro-batch 1.
    """
    import torch

    while True:
        try:
            for s in range(0, len(idx), state.micro_batch):
                part = idx[s : s + state.micro_batch]
                step(part, len(part) / len(idx))
            return
        except torch.OutOfMemoryError:
            if state.micro_batch <= 1:
                raise
            state.events.append({"from": state.micro_batch, "to": state.micro_batch // 2})
            state.micro_batch //= 2
            if on_oom is not None:
                on_oom()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
