"""sentiloop: iterative self-training label cleaning for sentiment corpora, as a DVC pipeline."""

__version__ = "0.1.0"
