"""Per-iteration bias report: statistics always, an LLM-written review when a provider is set.

Self-training drifts: an ensemble that is slightly better at one class "corrects" rows into that
class, retrains on them and becomes more so (confirmation bias). The statistics here make that
visible per iteration, and `mitigation.engage` tells the correct stage to switch on class-balanced
per-class thresholds and per-class caps when the class distribution has drifted from the original
labels by more than a bound. Inputs are plain DataFrames so stages can build them from the store
and the predictions parquet:

  labels       id, label (original), current_label (after this iteration), [split], [text]
  changes      id, old_label, new_label, source   (this iteration's label changes)
  predictions  id, [split], ens_label, confidence, agreement, p_ens_<class>..., p_<member>_<class>...
  answers      the LLM answers of this iteration (sentiloop.relabel.ANSWER_COLUMNS)

`bias_stats` computes the numbers; `bias_report` also writes metrics/analysis/itK.md + itK.json
and, with a real provider, appends the LLM review (same cache, budget and redaction as relabeling).
"""
from .mitigation import apply_class_caps, mitigated_schedule, store_mitigation
from .report import analyze_step, bias_report, render_markdown
from .review import REVIEW_SCHEMA, llm_review
from .samples import review_samples
from .stats import bias_stats, class_drift, member_names

__all__ = ["analyze_step", "apply_class_caps", "bias_report", "bias_stats", "class_drift",
           "llm_review", "member_names", "mitigated_schedule", "render_markdown", "REVIEW_SCHEMA",
           "review_samples", "store_mitigation"]
