"""Per-iteration bias report: statistics always, an LLM-written review when a provider is set.

Self-training drifts: an ensemble that is slightly better at one class "corrects" rows into that
class, retrains on them and becomes more so (confirmation bias). The statistics here make that
visible per iteration and flags (`mitigation.engage`) a class distribution that drifted from the
original labels by more than analysis.max_drift; the correction rule's own guard compares with
the *estimated true* class mix (sentiloop.judgement). Inputs are plain DataFrames so stages can build them from the store
and the predictions parquet:

  labels       id, label (original), current_label (after this iteration), [split], [text]
  changes      id, old_label, new_label, source   (this iteration's label changes)
  predictions  id, [split], ens_label, confidence, agreement, p_ens_<class>..., p_<member>_<class>...
  answers      the LLM answers of this iteration (sentiloop.relabel.ANSWER_COLUMNS)

stats.bias_stats computes the numbers; report.bias_report also writes metrics/analysis/itK.md +
itK.json and, with a real provider, appends the LLM review (review.py: same cache, budget and
redaction as relabeling). Import the submodule
you need: this package imports nothing itself, so the correct stage does not load the LLM code.
"""
