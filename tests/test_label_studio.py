"""`sentiloop review export --label-studio` and `sentiloop review import`: Label Studio tasks with
the proposed label as a pre-annotation, and their JSON export read back as feedback."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import ops_support as S
from sentiloop.cli import main
from sentiloop.feedback import FeedbackError, load_feedback, read_label_studio


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls")
    S.run_loop(root, S.corpus(30), S.params(loop={"max_iterations": 1}))
    return root


def _export(root, tmp_path, n=4):
    tasks = tmp_path / "tasks.json"
    assert (
        main(
            [
                "review",
                "export",
                "--classes",
                *S.CLASSES,
                "-n",
                str(n),
                "-k",
                "1",
                "--predictions",
                str(root / "data/it1/predictions.parquet"),
                "--store",
                str(root / "data/it1/sentences.sqlite"),
                "-o",
                str(tmp_path / "review.csv"),
                "--label-studio",
                str(tasks),
            ]
        )
        == 0
    )
    return pd.read_csv(tmp_path / "review.csv", keep_default_na=False), tasks


def test_tasks_carry_the_rows_and_the_proposed_label_as_a_prediction(run_root, tmp_path):
    review, tasks = _export(run_root, tmp_path)
    data = json.loads(tasks.read_text())
    assert len(data) == len(review) == 4
    for task, row in zip(data, review.itertuples()):
        assert task["data"] == {
            "text": row.text,
            "sentiloop_id": row.id,
            "original_label": row.original_label,
            "current_label": row.current_label,
            "proposed_label": row.proposed_label,
        }
        (pred,) = task["predictions"]
        assert pred["result"] == [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [row.proposed_label]}}
        ]
        assert pred["score"] == pytest.approx(row.confidence, abs=1e-4)
    config = (tmp_path / "tasks.config.xml").read_text()
    assert '<Choices name="sentiment" toName="text"' in config
    assert all(f'<Choice value="{c}"/>' in config for c in S.CLASSES)


def _annotate(tasks_path, answers):
    """What Label Studio's JSON export looks like after annotating: annotations per task."""
    data = json.loads(tasks_path.read_text())
    for task, (label, cancelled) in zip(data, answers):
        if label is None:
            continue
        task["annotations"] = [
            {
                "id": 1,
                "completed_by": {"id": 3, "email": "ann@example.com"},
                "was_cancelled": cancelled,
                "result": [
                    {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
                ],
            }
        ]
    return data


def test_import_turns_annotations_into_feedback_the_loop_reads(run_root, tmp_path):
    review, tasks = _export(run_root, tmp_path)
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(_annotate(tasks, [("neutral", False), (None, False), ("positive", True), ("negative", False)]))
    )
    fb = tmp_path / "feedback"
    out = fb / "labelstudio.csv"
    store = str(run_root / "data/it1/sentences.sqlite")
    assert main(["review", "import", str(export), "-o", str(out), "--store", store, "--classes", *S.CLASSES]) == 0
    assert out.read_text() == (
        "id,label,reviewer\n"
        f"{review.id[0]},neutral,labelstudio:ann@example.com\n"
        f"{review.id[3]},negative,labelstudio:ann@example.com\n"
    )
    acc, rej = load_feedback(fb, S.CLASSES, store)
    assert rej.empty and sorted(acc["id"]) == sorted([review.id[0], review.id[3]])
    # an existing file is never overwritten silently
    assert main(["review", "import", str(export), "-o", str(out), "--store", store, "--classes", *S.CLASSES]) == 2
    # an unknown label is written but reported, with exit 1 (the correct stage would reject it)
    export.write_text(json.dumps(_annotate(tasks, [("happy", False)])))
    assert (
        main(["review", "import", str(export), "-o", str(fb / "bad.csv"), "--store", store, "--classes", *S.CLASSES])
        == 1
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a Label Studio JSON export"),
        ('{"a": 1}', "is a list of tasks"),
        ('[{"data": {"text": "x"}}]', "no data.sentiloop_id"),
        ('[{"data": {"sentiloop_id": "t1"}, "annotations": [{"result": []}]}]', "expected one 'sentiment' choice"),
    ],
)
def test_malformed_exports_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "export.json"
    path.write_text(content)
    with pytest.raises(FeedbackError, match=message):
        read_label_studio(path)
