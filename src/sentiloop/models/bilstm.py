"""BiLSTM member (PyTorch): stacked bidirectional LSTM with dropout between layers (seed 003).

    Embedding -> Dropout -> BiLSTM (seq) -> Dropout -> BiLSTM -> Dense+ReLU -> Dropout -> Output

Retraining strategies (config `strategy`, seed 001):
  finetune  load the previous iteration's weights, FREEZE the embedding layer (ids are stable
            because the vocabulary is fixed at iteration 0), train the LSTM and output layers
            with Adam at 1e-3, gradient clipping 1.0, dropout 0.2-0.3, early stopping on dev loss.
  scratch   a fresh network every iteration (same vocabulary, all layers trainable).
Iteration 0 (no `init_from`) trains from random initialisation whatever the strategy.

Inference is batched, length-sorted (packed sequences, little padding) under
`torch.inference_mode`, which is what makes thousands of sentences per second on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sentiloop.models._training import (
    EarlyStopping,
    check_texts,
    check_xy,
    epoch_bar,
    epoch_done,
    length_buckets,
    torch_device,
    torch_setup,
)
from sentiloop.models.base import ModelError, SentimentModel
from sentiloop.models.vocab import PAD_ID, Vocabulary, vocabulary_for

STRATEGIES = ("finetune", "scratch")
WEIGHTS_FILE = "bilstm.safetensors"


def _build_net(vocab_size: int, n_classes: int, cfg: dict[str, Any]):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    class StackedBiLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            e, h, d = int(cfg["embedding_dim"]), int(cfg["hidden_size"]), float(cfg["dropout"])
            self.embedding = nn.Embedding(vocab_size, e, padding_idx=PAD_ID)
            self.dropout = nn.Dropout(d)
            self.lstms = nn.ModuleList(
                nn.LSTM(e if i == 0 else 2 * h, h, batch_first=True, bidirectional=True)
                for i in range(int(cfg["num_layers"]))
            )
            self.dense = nn.Linear(2 * h, int(cfg["dense_size"]))
            self.out = nn.Linear(int(cfg["dense_size"]), n_classes)

        def forward(self, ids, lengths):
            x = self.dropout(self.embedding(ids))
            lengths = lengths.clamp(min=1).cpu()
            h_n = None
            for i, lstm in enumerate(self.lstms):
                packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                if i == len(self.lstms) - 1:
                    _, (h_n, _) = lstm(packed)
                else:
                    seq, _ = lstm(packed)
                    seq, _ = torch.nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=ids.shape[1])
                    x = self.dropout(seq)
            pooled = torch.cat([h_n[-2], h_n[-1]], dim=1)  # last forward, last backward state
            z = self.dropout(torch.relu(self.dense(pooled)))
            return self.out(z)

    return StackedBiLSTM()


class BiLSTMModel(SentimentModel):
    kind = "bilstm"

    def __init__(self, classes, config=None, *, language="en", seed=0):
        super().__init__(classes, config, language=language, seed=seed)
        if self.config["strategy"] not in STRATEGIES:
            raise ModelError(f"bilstm strategy must be one of {STRATEGIES}, got {self.config['strategy']!r}")
        self.vocab: Vocabulary | None = None
        self.net = None

    # --- training ------------------------------------------------------------------
    def fit(self, texts, labels, *, init_from=None, eval_set=None):
        texts = check_texts(texts)
        y = check_xy(texts, labels, self.n_classes)
        torch = torch_setup(self.config, self.seed)
        device = torch_device(self.config)
        cfg = self.config
        if init_from is not None:
            if not isinstance(init_from, BiLSTMModel) or init_from.net is None:
                raise ModelError("bilstm init_from must be a fitted BiLSTMModel")
            if init_from.classes != self.classes:
                raise ModelError(f"init_from classes {init_from.classes} != {self.classes}")
        finetune = init_from is not None and cfg["strategy"] == "finetune"
        prev_vocab = init_from.vocab if init_from is not None else None
        self.vocab, vocab_source = vocabulary_for(cfg, texts, self.language, prev_vocab)

        self.net = _build_net(len(self.vocab), self.n_classes, cfg).to(device)
        frozen: list[str] = []
        if finetune:
            self.net.load_state_dict(init_from.net.state_dict())
            if cfg["freeze_embedding"]:
                self.net.embedding.weight.requires_grad_(False)
                frozen.append("embedding")
        self.strategy_ = "finetune" if finetune else ("scratch" if init_from is not None else "initial")
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=float(cfg["learning_rate"]))
        loss_fn = torch.nn.CrossEntropyLoss()

        ids, lens = self.vocab.encode(texts, padding="post", return_lengths=True)
        ids_t, lens_t, y_t = torch.from_numpy(ids).long(), torch.from_numpy(lens), torch.from_numpy(y)
        dev = None
        if eval_set is not None:
            dev_texts = check_texts(eval_set[0])
            dy = check_xy(dev_texts, eval_set[1], self.n_classes)
            d_ids, d_lens = self.vocab.encode(dev_texts, padding="post", return_lengths=True)
            dev = (d_ids, d_lens, dy)
        rng = np.random.default_rng(self.seed)
        stopper = EarlyStopping(patience=int(cfg["patience"]))
        self.history_ = []
        bs = int(cfg["batch_size"])
        progress = epoch_bar("bilstm", cfg["epochs"])
        for epoch in range(int(cfg["epochs"])):
            self.net.train()
            total, seen = 0.0, 0
            for b in length_buckets(lens, bs, rng):
                bt = torch.from_numpy(b)
                ml = int(lens[b].max()) or 1
                logits = self.net(ids_t[bt, :ml].to(device), lens_t[bt])
                loss = loss_fn(logits, y_t[bt].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(params, float(cfg["grad_clip"]))
                opt.step()
                total += loss.item() * len(b)
                seen += len(b)
            rec: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": total / seen,
                "frozen": frozen,
                "lr": float(cfg["learning_rate"]),
                "vocab": vocab_source,
            }
            p = self._proba_ids(*dev[:2]) if dev is not None else None
            stop = stopper.end_epoch(
                self.history_, rec, epoch, self.net.state_dict, p, dev[2] if dev is not None else None
            )
            epoch_done(progress, rec)
            if stop:
                break
        progress.close()
        stopper.restore_best(self.net, self.history_)
        self.net.eval()
        self.n_train_samples_ = len(texts)
        return self

    # --- inference -----------------------------------------------------------------
    def _proba_ids(self, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
        import torch

        device = next(self.net.parameters()).device
        self.net.eval()
        out = np.empty((len(ids), self.n_classes), dtype=np.float64)
        with torch.inference_mode():
            for b in length_buckets(lens, int(self.config["predict_batch_size"])):
                ml = int(lens[b].max()) or 1
                x = torch.from_numpy(ids[b, :ml]).long().to(device)
                logits = self.net(x, torch.from_numpy(lens[b]))
                out[b] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return out / out.sum(axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted(self.net is not None)
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.n_classes))
        torch_setup(self.config, self.seed)
        ids, lens = self.vocab.encode(texts, padding="post", return_lengths=True)
        return self._proba_ids(ids, lens)

    # --- persistence ---------------------------------------------------------------
    def _extra_meta(self):
        return {"vocab_size": len(self.vocab) if self.vocab else None}

    def _save_weights(self, directory: Path) -> None:
        self._check_fitted(self.net is not None)
        from safetensors.torch import save_file

        self.vocab.save(directory)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(directory / WEIGHTS_FILE)
        )

    def _load_weights(self, directory: Path, extra: dict[str, Any]) -> None:
        from safetensors.torch import load_file

        torch_setup(self.config, self.seed)
        self.vocab = Vocabulary.load(directory)
        self.net = _build_net(len(self.vocab), self.n_classes, self.config)
        self.net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        import torch

        want_gpu = str(self.config.get("device", "cpu")) != "cpu" and torch.cuda.is_available()
        self.net.to("cuda" if want_gpu else "cpu").eval()
