#!/usr/bin/env python3
"""Train the iris model that MLServer serves in the end-to-end test.

Usage: train.py OUT_DIR

Reads models/iris.csv, fits a multinomial LogisticRegression on the four
features (in the CSV's column order, which is the order of the columns of
the FP64 input tensor), and writes into OUT_DIR/iris/:

    model.joblib         the fitted estimator (joblib)
    model-settings.json  MLServer's settings: mlserver_sklearn.SKLearnModel,
                         parameters.uri, and the input and output metadata

and OUT_DIR/expected.json: scikit-learn's predict and predict_proba for all
150 rows, in CSV order, which the Go test compares the served answers with.

The fit is deterministic (lbfgs, fixed random_state), so a rerun writes the
same predictions.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

FEATURES = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]
LABEL = "species"
MODEL_NAME = "iris"
MODEL_VERSION = "1"
REPO = Path(__file__).resolve().parents[2]
CSV_PATH = REPO / "models" / "iris.csv"


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        r = csv.reader(f)
        header = next(r)
        if header != FEATURES + [LABEL]:
            sys.exit(f"{path}: unexpected header {header}")
        X, y = [], []
        for row in r:
            X.append([float(v) for v in row[:4]])
            y.append(row[4])
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=object)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1]).resolve()
    model_dir = out / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)

    X, y = read_csv(CSV_PATH)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(X, y)
    classes = [str(c) for c in model.classes_]
    joblib.dump(model, model_dir / "model.joblib")

    settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(FEATURES)]}],
        "outputs": [
            {"name": "predict", "datatype": "BYTES", "shape": [-1, 1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]},
        ],
        "parameters": {"uri": "./model.joblib", "version": MODEL_VERSION},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")

    predictions = [str(p) for p in model.predict(X)]
    expected = {
        "model": MODEL_NAME,
        "version": MODEL_VERSION,
        "estimator": "LogisticRegression(max_iter=1000)",
        "sklearn": sklearn.__version__,
        "features": FEATURES,
        "classes": classes,
        "accuracy": float(np.mean(np.asarray(predictions, dtype=object) == y)),
        "predictions": predictions,
        "probabilities": model.predict_proba(X).tolist(),
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"trained {MODEL_NAME} v{MODEL_VERSION}: accuracy {expected['accuracy']:.4f} "
          f"on {len(y)} rows (scikit-learn {sklearn.__version__}) -> {model_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
