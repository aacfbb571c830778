"""GTO registry in a temporary git + DVC repository: promote, refuse a failed gate, rollback,
and load the bundle a stage points at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ops_support as S
from sentiloop import registry
from sentiloop.bundle import Bundle, build_bundle
from sentiloop.cli import main

ARTIFACTS = """artifacts:
  sentiment-bundle:
    path: models/bundle
    type: model
"""


def _sh(repo, *args):
    res = subprocess.run(list(args), cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _sh(repo, "git", "init", "-q")
    _sh(repo, "git", "config", "user.email", "test@example.com")
    _sh(repo, "git", "config", "user.name", "test")
    _sh(repo, S.tool("dvc"), "init", "-q")
    (repo / "dvc.yaml").write_text(ARTIFACTS)
    (repo / ".gitignore").write_text("/.sentiloop/\n")
    rows = S.corpus(30)
    models = tmp_path / "models"

    def commit(tag: str, *, passed: bool, noise: int = 0):
        """A new bundle (a lexicon fitted with `tag` in its config) + gate verdict, committed."""
        model = S.fit_lexicon(rows, config={"smoothing": 1.0 + noise})
        model.save(models / tag)
        gate = {
            "passed": passed,
            "deployable": passed,
            "f1": 0.8 if passed else 0.6,
            "threshold": 0.75,
            "attempts": 0 if passed else 3,
        }
        build_bundle(
            repo / "models/bundle",
            member_dirs={"lexicon": models / tag},
            weights=None,
            classes=S.CLASSES,
            language="en",
            gate=gate,
            params={"tag": tag},
        )
        (repo / "metrics").mkdir(exist_ok=True)
        (repo / "metrics/gate.json").write_text(json.dumps(gate))
        _sh(repo, S.tool("dvc"), "add", "-q", "models/bundle")
        _sh(repo, "git", "add", "-A")
        _sh(repo, "git", "commit", "-qm", tag)
        return _sh(repo, "git", "rev-parse", "HEAD").strip()

    repo_commit = commit
    return repo, repo_commit


def _tag_of(bundle_dir):
    return json.loads((bundle_dir / "manifest.json").read_text())["params"]["tag"]


def test_promote_refuse_rollback_and_resolve(repo, capsys):
    repo, commit = repo
    c1 = commit("one", passed=True)
    out = registry.promote(repo, "prod")
    assert out["version"] == "v0.0.1" and out["commit"] == c1 and out["changed"]
    assert registry.promote(repo, "prod")["changed"] is False  # idempotent
    assert main(["registry", "promote", "--repo", str(repo), "--stage", "dev"]) == 0

    commit("two", passed=True, noise=1)
    assert main(["registry", "promote", "--repo", str(repo), "--stage", "prod"]) == 0
    assert registry.stage_version(repo, "prod") == "v0.0.2"
    assert registry.stage_version(repo, "dev") == "v0.0.1"
    assert _tag_of(registry.resolve_bundle(repo, "prod")) == "two"

    commit("three", passed=False, noise=2)
    with pytest.raises(registry.RegistryError, match="quality gate failed"):
        registry.promote(repo, "staging")
    assert main(["registry", "promote", "--repo", str(repo), "--stage", "prod"]) == 2
    assert "refusing to promote" in capsys.readouterr().err
    assert registry.stage_version(repo, "prod") == "v0.0.2"
    assert len(registry._versions(repo, "sentiment-bundle")) == 2  # three was never registered

    assert main(["registry", "rollback", "--repo", str(repo), "--stage", "prod"]) == 0
    assert registry.stage_version(repo, "prod") == "v0.0.1"
    prod = registry.resolve_bundle(repo, "prod")
    assert _tag_of(prod) == "one"  # exported from DVC at v0.0.1's commit, not the working tree
    assert _tag_of(repo / "models/bundle") == "three"
    assert Bundle.load(prod).predict(["i love it"])[0] == ["positive"]

    # gto itself agrees (its table is what the README shows)
    table = _sh(repo, S.tool("gto"), "show")
    assert "sentiment-bundle" in table and "v0.0.1" in table and "v0.0.2" in table
    row = next(line for line in table.splitlines() if "sentiment-bundle" in line)
    cells = [c.strip() for c in row.strip("│|").split("│")]
    header = next(line for line in table.splitlines() if "name" in line)
    names = [c.strip() for c in header.strip("│|").split("│")]
    assert dict(zip(names, cells))["#prod"] == "v0.0.1"
    assert main(["registry", "show", "--repo", str(repo)]) == 0
    assert "#prod" in capsys.readouterr().out

    with pytest.raises(registry.RegistryError, match="unknown stage"):
        registry.promote(repo, "production")
    with pytest.raises(registry.RegistryError, match="no version"):
        registry.rollback(repo, "staging")
    with pytest.raises(registry.RegistryError, match="no version 'v9.9.9'"):
        registry.rollback(repo, "prod", to="v9.9.9")


def test_promote_without_any_gate_verdict_is_refused(repo):
    repo, commit = repo
    commit("one", passed=True)
    (repo / "metrics/gate.json").unlink()
    _sh(repo, "git", "commit", "-qam", "drop the gate metric")
    # the working tree's bundle manifest still carries the verdict: that is used
    assert registry.promote(repo, "dev")["gate"]["source"].endswith("manifest.json")
    import shutil

    shutil.rmtree(repo / "models/bundle")
    with pytest.raises(registry.RegistryError, match="no quality-gate outcome"):
        registry.promote(repo, "staging", ref="HEAD")


_HANDLER_SCRIPT = """
import io, logging, sys
class Closing(logging.StreamHandler):   # like absl's handler: closes a stream it does not own
    def close(self):
        self.stream.close()
        super().close()
stream = io.StringIO()
logging.getLogger("other").addHandler(Closing(stream))
if sys.argv[1] == "plain":
    import gto.api
else:
    from sentiloop.registry import _gto
    _gto()
print("closed" if stream.closed else "open")
"""


@pytest.mark.parametrize("how,expected", [("plain", "closed"), ("registry", "open")])
def test_importing_gto_leaves_other_log_handlers_open(how, expected):
    """gto's import-time dictConfig closes every existing handler; the registry shields them
    (under pytest, absl's handler closing the capture stream crashed the whole session)."""
    out = subprocess.run(
        [sys.executable, "-c", _HANDLER_SCRIPT, how],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_an_older_version_comes_from_the_remote_or_one_line_says_what_to_run(repo, tmp_path, capsys):
    """A fresh clone has no DVC cache: never pushed, loading an older registered version is one
    line naming the version, the commit and what to run; pushed (from the clone that built it)
    to the default remote, the same call fetches it."""
    repo, commit = repo
    remote = tmp_path / "remote"
    _sh(repo, S.tool("dvc"), "remote", "add", "-d", "local", str(remote))
    c1 = commit("one", passed=True)
    registry.promote(repo, "prod")
    commit("two", passed=True, noise=1)
    registry.promote(repo, "staging")

    clone = tmp_path / "clone"
    _sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    _sh(clone, "git", "fetch", "-q", "--tags")
    code = main(["predict", "--repo", str(clone), "--version", "v0.0.1", "-i", "-"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"models/bundle of v0.0.1 ({c1[:12]}) is in neither the local DVC cache nor remote 'local'" in err
    assert "`dvc push`" in err and "make pull" in err

    # the builder pushes that version (what `make push` does after a run), the clone fetches it
    _sh(repo, "git", "checkout", "-q", c1)
    _sh(repo, S.tool("dvc"), "push", "-q")
    _sh(repo, "git", "checkout", "-q", "-")
    older = registry.resolve_bundle(clone, "v0.0.1")
    assert _tag_of(older) == "one"
    assert Bundle.load(older).predict(["love great"])[0] == ["positive"]


def test_promote_ref_takes_a_dvc_experiment_name_or_says_what_it_is_not(repo, capsys):
    repo, commit = repo
    base = commit("base", passed=True)
    exp = commit("exp", passed=True, noise=1)
    # what `dvc exp run` leaves: the experiment's commit under refs/exps, off every branch
    _sh(repo, "git", "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/lucky-exp", exp)
    _sh(repo, "git", "reset", "-q", "--hard", base)
    assert registry.commit_of(repo, "lucky-exp") == exp
    out = registry.promote(repo, "staging", ref="lucky-exp")
    assert out["commit"] == exp and registry.stage_version(repo, "staging") == out["version"]
    assert main(["registry", "promote", "--repo", str(repo), "--stage", "dev", "--ref", "no-such-exp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'no-such-exp' is neither a git revision nor a DVC experiment" in err
    assert "rev-parse" not in err
