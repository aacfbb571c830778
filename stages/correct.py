"""Stage correct@itK: human locks, LLM answers, then ensemble labels above the threshold."""
import _common
from sentiloop.steps import correct


def summary(r: dict) -> dict:
    """The printed line: `changes` counts every label changed, human ones included."""
    human = int((r.get("corrections_by_source") or {}).get("human", 0))
    return {"k": r["k"], "passed_through": r["passed_through"], "changes": int(r["changes"]) + human,
            "of_which_human": human, "label_change_rate": r["label_change_rate"]}


if __name__ == "__main__":
    a = _common.args(__doc__, k=True)
    _common.run(lambda s, L: correct.run(s, L, a.k), lambda r: print(summary(r)))
