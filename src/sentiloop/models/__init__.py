"""Ensemble members behind one interface (see base.SentimentModel).

Members are imported lazily by name so that a stage that only needs the lexicon never pays
for importing torch, TensorFlow or transformers.
"""

from sentiloop.models.base import MODEL_KINDS, SentimentModel, build_model, load_model

__all__ = ["SentimentModel", "build_model", "load_model", "MODEL_KINDS"]
