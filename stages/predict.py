"""Stage predict@itK (the models of iteration K-1 judge every row) and predict_final (--final)."""

import _common
from sentiloop.steps import predict


def show(r):
    print(
        {m: round(e["dev"]["macro_f1"], 4) for m, e in r["members"].items()},
        "ensemble dev macro-F1",
        round(r["ensemble"]["dev"]["macro_f1"], 4),
    )


if __name__ == "__main__":
    a = _common.args(__doc__, k=True, final=True)
    _common.run(predict.final if a.final else (lambda s, L: predict.run(s, L, a.k)), show)
