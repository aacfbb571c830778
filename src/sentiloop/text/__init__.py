from sentiloop.text.tokenize import normalize, tokenize, tokenize_many

__all__ = ["tokenize", "tokenize_many", "normalize"]
