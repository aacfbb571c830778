"""A tiny synthetic 3-class sentiment corpus for the neural members' tests (no downloads)."""

from __future__ import annotations

import numpy as np

CLASSES = ["negative", "neutral", "positive"]
_POS = ["good", "great", "love", "excellent", "happy", "wonderful", "nice", "best"]
_NEG = ["bad", "awful", "hate", "terrible", "sad", "worst", "horrible", "boring"]
_NEU = ["table", "today", "chair", "train", "window", "paper", "street", "monday"]
_FILL = ["the", "movie", "was", "this", "i", "it", "a", "really", "and", "so"]


def tiny_corpus(n: int = 240, seed: int = 0):
    """(texts, labels): each sentence mixes filler words with 1-2 words of its class."""
    rng = np.random.default_rng(seed)
    words = {0: _NEG, 1: _NEU, 2: _POS}
    texts, labels = [], []
    for i in range(n):
        y = i % 3
        toks = list(rng.choice(_FILL, size=rng.integers(2, 6)))
        toks += list(rng.choice(words[y], size=rng.integers(1, 3)))
        rng.shuffle(toks)
        texts.append(" ".join(toks))
        labels.append(y)
    return texts, np.array(labels, dtype=np.int64)


def split(n_train: int = 180, n_dev: int = 60, seed: int = 0):
    t, y = tiny_corpus(n_train + n_dev, seed)
    return (t[:n_train], y[:n_train]), (t[n_train:], y[n_train:])


def make_tiny_bert(directory, words) -> str:
    """Save a 4-layer, 32-wide BERT with a word-level vocabulary of `words` (no download)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words))
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)})
    assert "[UNK]" not in tok.tokenize(" ".join(sorted(set(words))))
    tok.save_pretrained(directory)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(directory)
    return str(directory)
