"""Where every file of a run lives: the one place that knows the layout.

dvc.yaml spells the same paths (DVC cannot import Python); tests/test_dag.py checks that the two
agree stage by stage. Iterations are numbered: k = 0 is the split corpus and the models trained
on it; iteration k >= 1 predicts with the models of k - 1, corrects into store k and retrains
models k. Everything is relative to `root` (the repository, or a benchmark's work directory).

    data/ingested.sqlite  data/gold.sqlite  data/rejects.csv        ingest
    data/it<k>/sentences.sqlite  data/it<k>/loop_state.json        split (k=0), correct (k>=1)
    data/it<k>/predictions.parquet  relabel.parquet                 predict, relabel (k>=1)
    data/it<k>/judgement.parquet  metrics/noise/it<k>.json          judge (k>=1)
    data/final/predictions.parquet  data/final/sentences.sqlite     predict_final, publish
    models/it<k>/<member>/  models/gate/<member>/  models/bundle/   train/retrain, gate, bundle
    metrics/ingest.json  split.json  eval/it<k>.json  llm/it<k>.json  iterations/it<k>.json
    metrics/analysis/it<k>.{md,json}  summary.json  live/  gate.json  alerts.jsonl  report.md  report/
    data/review/overview.json  iterations.json  queue.parquet  applied.parquet  review_data (the app)
    metrics/plots/convergence.csv  members.csv  (summarize)  confusion.csv  (report)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STORE = "sentences.sqlite"
STATE = "loop_state.json"
PREDICTIONS = "predictions.parquet"
RELABEL = "relabel.parquet"
JUDGEMENT = "judgement.parquet"
FOLDS = "folds"  # models/it<k>/<member>/folds/f<i>: cross-fitting models


def it(k: int) -> str:
    """The name of iteration k (it0, it1, ...)."""
    return f"it{int(k)}"


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # --- data ------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def ingested(self) -> Path:
        return self.data / "ingested.sqlite"

    @property
    def gold(self) -> Path:
        return self.data / "gold.sqlite"

    @property
    def rejects(self) -> Path:
        return self.data / "rejects.csv"

    def iteration_dir(self, k: int) -> Path:
        return self.data / it(k)

    def store(self, k: int) -> Path:
        """The corpus after iteration k's corrections (k = 0: as split)."""
        return self.iteration_dir(k) / STORE

    def state(self, k: int) -> Path:
        return self.iteration_dir(k) / STATE

    def predictions(self, k: int) -> Path:
        """Iteration k's predictions (made by the models of k - 1)."""
        return self.iteration_dir(k) / PREDICTIONS

    def relabel(self, k: int) -> Path:
        return self.iteration_dir(k) / RELABEL

    def judgement(self, k: int) -> Path:
        """judge@it<k>: per free train row, the posterior, P(label wrong) and the rule's verdict."""
        return self.iteration_dir(k) / JUDGEMENT

    def noise(self, k: int) -> Path:
        """judge@it<k>: the estimated noise matrix, true class mix and noise rate."""
        return self.metrics / "noise" / f"{it(k)}.json"

    @property
    def final_dir(self) -> Path:
        return self.data / "final"

    @property
    def final_store(self) -> Path:
        return self.final_dir / STORE

    @property
    def final_predictions(self) -> Path:
        return self.final_dir / PREDICTIONS

    @property
    def review_dir(self) -> Path:
        """The review app's precomputed summaries (stage review_data)."""
        return self.data / "review"

    @property
    def review_overview(self) -> Path:
        return self.review_dir / "overview.json"

    @property
    def review_iterations(self) -> Path:
        return self.review_dir / "iterations.json"

    @property
    def review_queue(self) -> Path:
        return self.review_dir / "queue.parquet"

    @property
    def review_applied(self) -> Path:
        return self.review_dir / "applied.parquet"

    def feedback(self, directory: str | Path) -> Path:
        """feedback.dir (relative to the root unless absolute)."""
        return self.root / directory

    def in_root(self, path: str | Path) -> Path:
        """A configured path (data.path, llm.cache.dir, ...) as seen from the root."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    # --- models ----------------------------------------------------------------------------
    def models(self, k: int, member: str | None = None) -> Path:
        d = self.root / "models" / it(k)
        return d / member if member else d

    @staticmethod
    def fold(member_dir: Path, f: int) -> Path:
        return Path(member_dir) / FOLDS / f"f{f}"

    @property
    def gate_models(self) -> Path:
        return self.root / "models" / "gate"

    @property
    def bundle(self) -> Path:
        return self.root / "models" / "bundle"

    # --- metrics ---------------------------------------------------------------------------
    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def ingest_metrics(self) -> Path:
        return self.metrics / "ingest.json"

    @property
    def split_metrics(self) -> Path:
        return self.metrics / "split.json"

    def eval(self, k: int) -> Path:
        """Dev/test evaluation of the models of iteration k."""
        return self.metrics / "eval" / f"{it(k)}.json"

    def llm_usage(self, k: int) -> Path:
        return self.metrics / "llm" / f"{it(k)}.json"

    def iteration_metrics(self, k: int) -> Path:
        return self.metrics / "iterations" / f"{it(k)}.json"

    @property
    def analysis_dir(self) -> Path:
        return self.metrics / "analysis"

    def analysis(self, k: int, suffix: str = "json") -> Path:
        return self.analysis_dir / f"{it(k)}.{suffix}"

    @property
    def summary(self) -> Path:
        return self.metrics / "summary.json"

    @property
    def live(self) -> Path:
        return self.metrics / "live"

    @property
    def plots(self) -> Path:
        """The curated plot tables of dvc.yaml's `plots:` section."""
        return self.metrics / "plots"

    @property
    def convergence_plot(self) -> Path:
        return self.plots / "convergence.csv"

    @property
    def members_plot(self) -> Path:
        return self.plots / "members.csv"

    @property
    def confusion_plot(self) -> Path:
        return self.plots / "confusion.csv"

    @property
    def gate_json(self) -> Path:
        return self.metrics / "gate.json"

    @property
    def alerts(self) -> Path:
        return self.metrics / "alerts.jsonl"

    @property
    def report(self) -> Path:
        return self.metrics / "report.md"

    @property
    def report_figures(self) -> Path:
        return self.metrics / "report"
