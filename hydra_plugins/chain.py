"""OmegaConf resolver that unrolls the self-training loop into a chain of iterations.

DVC forbids cycles and `foreach` cannot look at the previous item, so the loop is expanded
into params.yaml as {it1: {k: 1, prev: it0, ...}, it2: {k: 2, prev: it1, ...}} and dvc.yaml
walks it. DVC imports every module under `hydra_plugins/` before composing, which registers
the resolver. It must return an OmegaConf container, not a plain dict.
"""
from omegaconf import OmegaConf


def _chain(n, start, end):
    n = int(n)
    if n < 1:
        raise ValueError(f"loop.max_iterations must be >= 1, got {n}")
    out = {}
    for k in range(1, n + 1):
        value = float(start) if n == 1 else float(start) + (float(end) - float(start)) * (k - 1) / (n - 1)
        out[f"it{k}"] = {"k": k, "prev": f"it{k - 1}", "threshold": round(value, 4)}
    return OmegaConf.create(out)


OmegaConf.register_new_resolver("chain", _chain, replace=True)


def _member_chain(n, members):
    """{it1-lexicon: {k: 1, prev: it0, member: lexicon}, ...}: one retrain stage per member per
    iteration (dvc's matrix over a dict only exposes its keys, so foreach walks this instead)."""
    out = {}
    for k in range(1, int(n) + 1):
        for m in members:
            out[f"it{k}-{m}"] = {"k": k, "prev": f"it{k - 1}", "member": str(m)}
    return OmegaConf.create(out)


OmegaConf.register_new_resolver("member_chain", _member_chain, replace=True)
