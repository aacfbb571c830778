"""Model registry on git tags (GTO): versions and stages of the bundle artifact.

The bundle directory is a DVC output declared in dvc.yaml's `artifacts:` section; a version is a
git commit (whose dvc.lock pins the bundle's content), a stage (dev, staging, prod) is a GTO tag
pointing at a version. So promoting is cheap, reviewable (`git tag`, `gto show`) and reversible
(rollback = assign the stage to an older version again).

Refusal: a commit whose quality gate failed is never registered. The verdict is read from the
commit itself (metrics/gate.json, a git-tracked metric), falling back to the bundle's manifest in
the working tree when the commit has no gate metric.

GTO orders stage assignments by their tag timestamps, which have one-second resolution: two
assignments in the same second are ambiguous. `_next_second` waits out the current second
before tagging, so `gto show` and this module always agree on which version holds a stage.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from sentiloop.errors import SentiloopError
from sentiloop.layout import Layout

ARTIFACT = "sentiment-bundle"
BUNDLE_PATH = Layout().bundle.as_posix()  # models/bundle, as committed
GATE_METRIC = Layout().gate_json.as_posix()  # metrics/gate.json
STAGES = ("dev", "staging", "prod")


class RegistryError(SentiloopError, RuntimeError):
    pass


def _git(repo: str | Path, *args: str, check: bool = True) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RegistryError(f"git {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout.strip() if res.returncode == 0 else ""


def _gto():
    """`gto.api`, imported without closing other libraries' log handlers.

    Importing gto runs `logging.config.dictConfig`, which shuts down every handler created so far
    (`logging._handlerList`), not only gto's. A handler bound to a redirected stream (absl's,
    once TensorFlow is imported, under pytest's capture or a daemon's log file) then closes that
    stream for everyone. The handlers are hidden from that one call and restored after it."""
    import logging
    import sys

    if "gto.api" in sys.modules:
        return sys.modules["gto.api"]
    saved_list = logging._handlerList[:]
    saved_named = dict(logging._handlers)
    logging._acquireLock()
    try:
        del logging._handlerList[:]
    finally:
        logging._releaseLock()
    try:
        import gto.api
        import gto.exceptions  # noqa: F401
    finally:
        logging._acquireLock()
        try:
            logging._handlerList[:0] = saved_list
            for name, handler in saved_named.items():
                logging._handlers.setdefault(name, handler)
        finally:
            logging._releaseLock()
    return gto.api


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise RegistryError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")


def experiment_refs(repo: str | Path, name: str) -> list[str]:
    """The refs of the DVC experiments called `name` (refs/exps/<..>/<baseline>/<name>)."""
    out = _git(repo, "for-each-ref", "--format=%(refname)", "refs/exps", check=False)
    return [r for r in out.splitlines() if r.rsplit("/", 1)[-1] == name and r.count("/") >= 4]


def commit_of(repo: str | Path, ref: str) -> str:
    """The commit of a git revision or, failing that, of the DVC experiment named `ref`."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if commit:
        return commit
    exps = experiment_refs(repo, ref)
    if len(exps) == 1:
        return _git(repo, "rev-parse", "--verify", f"{exps[0]}^{{commit}}")
    if exps:
        commits = sorted({_git(repo, "rev-parse", e)[:12] for e in exps})
        raise RegistryError(
            f"--ref {ref!r} names {len(exps)} DVC experiments (commits "
            f"{', '.join(commits)}); pass the commit of the one to promote"
        )
    raise RegistryError(
        f"--ref {ref!r} is neither a git revision nor a DVC experiment name in "
        f"{repo} (see `git log`, `dvc exp list --all-commits`)"
    )


def gate_verdict(
    repo: str | Path, ref: str = "HEAD", bundle_path: str = BUNDLE_PATH, gate_metric: str = GATE_METRIC
) -> dict[str, Any]:
    """The quality gate's outcome for a commit: {"deployable": bool, "source": ..., ...}."""
    blob = _git(repo, "show", f"{commit_of(repo, ref)}:{gate_metric}", check=False)
    if blob:
        try:
            gate = json.loads(blob)
        except json.JSONDecodeError as e:
            raise RegistryError(f"{gate_metric} at {ref} is not valid JSON: {e}") from None
        return {**gate, "source": f"{gate_metric}@{ref}"}
    manifest = Path(repo) / bundle_path / "manifest.json"
    if manifest.exists():
        gate = json.loads(manifest.read_text()).get("gate") or {}
        if gate:
            return {**gate, "source": str(manifest.relative_to(repo))}
    raise RegistryError(
        f"no quality-gate outcome for {ref}: neither {gate_metric} in the commit "
        f"nor a gate section in {bundle_path}/manifest.json; run the gate stage first"
    )


def _versions(repo: str | Path, artifact: str) -> list[Any]:
    gto_api = _gto()
    from gto.exceptions import ArtifactNotFound

    try:
        return list(gto_api.show(str(repo), artifact, deprecated=False))
    except ArtifactNotFound:  # no tags yet
        return []


def version_of_commit(repo: str | Path, commit: str, artifact: str = ARTIFACT) -> str | None:
    for v in _versions(repo, artifact):
        if v.get("commit_hexsha") == commit and v.get("registrations"):
            return v["version"]
    return None


def commit_of_version(repo: str | Path, version: str, artifact: str = ARTIFACT) -> str:
    for v in _versions(repo, artifact):
        if v["version"] == version:
            return v["commit_hexsha"]
    raise RegistryError(
        f"{artifact} has no version {version!r}; known: {[v['version'] for v in _versions(repo, artifact)]}"
    )


def stage_version(repo: str | Path, stage: str, artifact: str = ARTIFACT) -> str | None:
    """The version that currently holds `stage` (what `gto show` prints), or None."""
    _check_stage(stage)
    table = _gto().show(str(repo))
    return ((table.get(artifact) or {}).get("stage") or {}).get(stage)


def _artifact_tag_seconds(repo: str | Path, artifact: str) -> int:
    out = _git(repo, "for-each-ref", "--format=%(taggerdate:unix)", f"refs/tags/{artifact}*", check=False)
    stamps = [int(s) for s in out.split() if s.strip().isdigit()]
    return max(stamps, default=0)


def _next_second(repo: str | Path, artifact: str) -> None:
    last = _artifact_tag_seconds(repo, artifact)
    now = time.time()
    if int(now) <= last:
        time.sleep(last + 1 - now + 0.01)


def promote(
    repo: str | Path,
    stage: str,
    *,
    ref: str = "HEAD",
    version: str | None = None,
    artifact: str = ARTIFACT,
    bundle_path: str = BUNDLE_PATH,
    message: str | None = None,
) -> dict[str, Any]:
    """Register `ref` as a version (unless it already is one) and assign it `stage`.

    Refuses when the commit's quality gate did not pass."""
    gto_api = _gto()
    _check_stage(stage)
    commit = commit_of(repo, ref)
    verdict = gate_verdict(repo, ref, bundle_path)
    if not verdict.get("deployable", verdict.get("passed", False)):
        raise RegistryError(
            f"refusing to promote {commit[:12]}: its quality gate failed (macro-F1 "
            f"{verdict.get('f1')} < {verdict.get('threshold')} after {verdict.get('attempts')} "
            f"attempt(s); from {verdict['source']})"
        )
    existing = version_of_commit(repo, commit, artifact)
    if existing is None:
        _next_second(repo, artifact)
        gto_api.register(
            str(repo),
            artifact,
            commit,
            version=version,
            message=message or f"Register {artifact} (gate macro-F1 {verdict.get('f1')})",
        )
        existing = version_of_commit(repo, commit, artifact)
        if existing is None:
            raise RegistryError(f"GTO did not register {commit[:12]}")
    elif version is not None and version != existing:
        raise RegistryError(f"{commit[:12]} is already registered as {existing}, not {version}")
    if stage_version(repo, stage, artifact) == existing:
        return {
            "artifact": artifact,
            "version": existing,
            "stage": stage,
            "commit": commit,
            "changed": False,
            "gate": verdict,
        }
    _next_second(repo, artifact)
    gto_api.assign(
        str(repo),
        artifact,
        stage,
        version=existing,
        force=True,
        message=message or f"Promote {artifact} {existing} to {stage}",
    )
    return {
        "artifact": artifact,
        "version": existing,
        "stage": stage,
        "commit": commit,
        "changed": True,
        "gate": verdict,
    }


def stage_history(repo: str | Path, stage: str, artifact: str = ARTIFACT) -> list[str]:
    """Versions assigned to `stage`, oldest first (repeats kept: a rollback is an assignment)."""
    events = _gto().history(str(repo), artifact, ascending=True)
    return [e["version"] for e in events if e["event"] == "assignment" and e["stage"] == stage]


def rollback(repo: str | Path, stage: str, *, to: str | None = None, artifact: str = ARTIFACT) -> dict[str, Any]:
    """Assign `stage` to an older version: `to`, or the one that held it before the current."""
    gto_api = _gto()
    _check_stage(stage)
    current = stage_version(repo, stage, artifact)
    if current is None:
        raise RegistryError(f"no version of {artifact} is in stage {stage!r}; nothing to roll back")
    if to is None:
        previous = [v for v in stage_history(repo, stage, artifact) if v != current]
        if not previous:
            raise RegistryError(f"{current} is the only version ever in {stage!r}; nothing older to roll back to")
        to = previous[-1]
    if to == current:
        raise RegistryError(f"{to} already holds {stage!r}")
    commit_of_version(repo, to, artifact)  # raises for an unknown version
    _next_second(repo, artifact)
    gto_api.assign(
        str(repo),
        artifact,
        stage,
        version=to,
        force=True,
        message=f"Roll back {artifact} {stage} from {current} to {to}",
    )
    return {"artifact": artifact, "stage": stage, "from": current, "to": to}


def show(repo: str | Path, artifact: str | None = None) -> str:
    """The `gto show` table."""
    import shutil
    import sys

    exe = shutil.which("gto") or str(Path(sys.executable).parent / "gto")
    res = subprocess.run(
        [exe, "show", *([artifact] if artifact else [])], cwd=str(repo), capture_output=True, text=True
    )
    if res.returncode != 0:
        return json.dumps(_gto().show(str(repo), artifact), default=str, indent=1)
    return res.stdout


def resolve_bundle(
    repo: str | Path,
    stage_or_version: str,
    *,
    artifact: str = ARTIFACT,
    bundle_path: str = BUNDLE_PATH,
    cache_dir: str | Path | None = None,
) -> Path:
    """A local directory holding the bundle of a stage (e.g. "prod") or version ("v0.0.3").

    The bundle is exported as DVC pinned it at the version's commit (from the local DVC cache,
    or the remote when the cache lacks it) into `cache_dir` (default
    .sentiloop/bundles/<version>-<commit>), so serving never depends on what is checked out."""
    repo = Path(repo)
    if stage_or_version in STAGES:
        version = stage_version(repo, stage_or_version, artifact)
        if version is None:
            raise RegistryError(f"no version of {artifact} is in stage {stage_or_version!r}")
    else:
        version = stage_or_version
    commit = commit_of_version(repo, version, artifact)
    dest = Path(cache_dir or repo / ".sentiloop" / "bundles") / f"{version}-{commit[:12]}"
    if (dest / "manifest.json").exists():
        return dest
    import shutil

    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(repo), rev=commit)
    if not fs.exists(bundle_path):
        raise RegistryError(f"{bundle_path} is not tracked by DVC at {version} ({commit[:12]})")
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        fs.get(bundle_path, str(tmp), recursive=True)  # the local cache, else the default remote
    except Exception as e:  # DVC's errors for missing data vary (DataIndexDirError, FileNotFoundError, ...)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, SentiloopError):
            raise
        raise RegistryError(
            f"{bundle_path} of {version} ({commit[:12]}) is in neither the local DVC cache nor "
            f"{remote_description(repo)}: run `dvc push` in the clone that built it, then `make pull` "
            f"here (or `dvc pull {bundle_path}` at that commit) [{type(e).__name__}]"
        ) from e
    tmp.rename(dest)
    return dest


def remote_description(repo: str | Path) -> str:
    """ "remote 'name' (url)" for the default DVC remote, or why there is none."""
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "dvc"
    dvc = str(exe) if exe.exists() else "dvc"
    res = subprocess.run([dvc, "remote", "default"], cwd=str(repo), capture_output=True, text=True)
    name = res.stdout.strip()
    if res.returncode != 0 or not name:
        return "a DVC remote (none is configured: `dvc remote add -d <name> <url>`, docs/ops.md)"
    lst = subprocess.run([dvc, "remote", "list"], cwd=str(repo), capture_output=True, text=True).stdout
    urls = dict(line.split(None, 1) for line in lst.splitlines() if len(line.split(None, 1)) == 2)
    url = urls.get(name, "").strip()
    return f"remote {name!r}" + (f" ({url})" if url else "")
