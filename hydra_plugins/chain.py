"""OmegaConf resolvers that unroll the self-training loop, and validate what is being composed.

DVC forbids cycles and `foreach` cannot look at the previous item, so the loop is expanded
into params.yaml as {it1: {k: 1, prev: it0, ...}, it2: {k: 2, prev: it1, ...}} and dvc.yaml
walks it. DVC imports every module under `hydra_plugins/` before composing (`dvc exp run`, and
`make params`, which calls DVC's own helper), which registers the resolvers. They must return
OmegaConf containers, not plain dicts.

`${chain:...}` also receives the whole tree being composed (`_root_`) and validates it against
sentiloop.settings first: a bad or unknown parameter, or a combination that cannot work, stops
the composition with one line (`params.yaml: correction.queue_at = -0.05: must be between 0 and 1`)
and params.yaml is not written, so no stage ever runs on it.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:  # this checkout's sentiloop, not one installed from elsewhere
    sys.path.insert(0, _SRC)

from sentiloop.settings import DERIVED, iteration_chain, retrain_chain, validate_composed  # noqa: E402


def _chain(n, *, _root_):
    tree = {
        k: OmegaConf.to_container(_root_[k], resolve=True) if OmegaConf.is_config(_root_[k]) else _root_[k]
        for k in _root_
        if k not in DERIVED
    }
    validate_composed(tree)
    return OmegaConf.create(iteration_chain(n))


def _member_chain(n, members):
    return OmegaConf.create(retrain_chain(n, list(members)))


OmegaConf.register_new_resolver("chain", _chain, replace=True)
OmegaConf.register_new_resolver("member_chain", _member_chain, replace=True)
