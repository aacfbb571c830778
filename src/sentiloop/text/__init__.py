from sentiloop.text.tokenize import tokenize, tokenize_many, normalize

__all__ = ["tokenize", "tokenize_many", "normalize"]
