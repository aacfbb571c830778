"""Stage predict@itK (models of the previous iteration judge every row) and predict_final."""
import argparse
from pathlib import Path

import _common
from sentiloop.pipeline import predict_step

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--models-of", required=True, help="iteration whose store and models to use (it0, it1, ...)")
    p.add_argument("--out", required=True, help="directory for predictions.parquet")
    a = p.parse_args()
    r = predict_step(_common.params(), Path(f"data/{a.models_of}/sentences.sqlite"), Path(f"models/{a.models_of}"),
                     Path(a.out) / "predictions.parquet", Path(f"metrics/eval/{a.models_of}.json"), a.models_of)
    print({m: round(e["dev"]["macro_f1"], 4) for m, e in r["members"].items()},
          "ensemble dev macro-F1", round(r["ensemble"]["dev"]["macro_f1"], 4))
