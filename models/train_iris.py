#!/usr/bin/env python3
"""Train the demo iris models and export them as rdv-model/v1 JSON.

Usage (from anywhere):

    pip install -r models/requirements.txt
    python3 models/train_iris.py              # train on models/iris.csv
    python3 models/train_iris.py --write-csv  # (re)create models/iris.csv first

Outputs, all under models/iris/:

    dt.json          champion:   DecisionTreeClassifier(max_depth=4)
    canary.json      baseline:   multinomial LogisticRegression
    challenger.json  challenger: RandomForestClassifier(n_estimators=25, max_depth=5)
    expected.json    scikit-learn's predict / predict_proba for every CSV row,
                     used by the Go parity test (stages/model/evaluator).

The run is deterministic: every estimator has a fixed random_state and the
JSON is written with a fixed layout, so two runs give byte-identical files.
The format is described in models/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

FORMAT = "rdv-model/v1"
FEATURES = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]
LABEL = "species"
HERE = Path(__file__).resolve().parent
CSV_PATH = HERE / "iris.csv"
OUT_DIR = HERE / "iris"
TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF


def write_csv(path: Path) -> None:
    """Write scikit-learn's bundled copy of Fisher's iris data as CSV."""
    iris = load_iris()  # reads the CSV shipped inside sklearn, no network
    names = [str(n) for n in iris.target_names]
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FEATURES + [LABEL])
        for row, target in zip(iris.data.tolist(), iris.target.tolist()):
            w.writerow([repr(float(v)) for v in row] + [names[target]])
    print(f"wrote {path.relative_to(HERE.parent)} ({len(iris.target)} rows)")


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
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def floats(a) -> list:
    """numpy array -> nested lists of Python floats (shortest round-trip repr)."""
    out = np.asarray(a, dtype=np.float64).tolist()
    for v in np.ravel(a):
        if not math.isfinite(float(v)):
            sys.exit(f"refusing to export non-finite value {v!r}")
    return out


def ints(a) -> list:
    return [int(v) for v in np.asarray(a).tolist()]


def export_tree(est: DecisionTreeClassifier) -> dict:
    t = est.tree_
    if t.n_outputs != 1:
        sys.exit("only single-output trees are supported")
    return {
        "children_left": ints(t.children_left),
        "children_right": ints(t.children_right),
        "feature": ints(t.feature),
        "threshold": floats(t.threshold),
        # tree_.value has shape (n_nodes, n_outputs=1, n_classes): drop the
        # output axis. Recent sklearn stores per-class fractions here.
        "value": floats(t.value[:, 0, :]),
    }


def header(name: str, kind: str, classes) -> dict:
    return {
        "format": FORMAT,
        "name": name,
        "version": "1",
        "kind": kind,
        "features": list(FEATURES),
        "classes": [str(c) for c in classes],
        "trained_with": f"scikit-learn {sklearn.__version__}",
    }


def export(name: str, kind: str, est) -> dict:
    doc = header(name, kind, est.classes_)
    if kind == "tree":
        doc.update(export_tree(est))
    elif kind == "forest":
        # The Go side averages normalized leaf distributions of every tree,
        # which is what ForestClassifier.predict_proba does. Every sub-tree
        # must use the forest's class order.
        for sub in est.estimators_:
            if not np.array_equal(sub.classes_, np.arange(len(est.classes_))):
                sys.exit("forest sub-tree class order differs from the forest's")
        doc["trees"] = [export_tree(sub) for sub in est.estimators_]
    elif kind == "linear":
        coef = np.asarray(est.coef_)
        if len(est.classes_) > 2 and coef.shape[0] != len(est.classes_):
            sys.exit("linear model: coef rows != classes")
        doc["coef"] = floats(coef)
        doc["intercept"] = floats(est.intercept_)
        # sklearn 1.9 LogisticRegression.predict_proba: softmax of the decision
        # function for more than two classes (multinomial).
        doc["link"] = "softmax"
    else:
        raise ValueError(kind)
    return doc


def dumps(obj, indent: int = 0) -> str:
    """JSON with one line per object key and scalar arrays kept on one line."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [inner + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False, separators=(", ", ": "))


def write_json(path: Path, obj) -> None:
    path.write_text(dumps(obj) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-csv", action="store_true",
                    help="write models/iris.csv from scikit-learn's bundled copy first")
    ap.add_argument("--out", type=Path, default=OUT_DIR,
                    help="directory for the model files and expected.json (default models/iris)")
    args = ap.parse_args()
    out_dir = args.out
    if args.write_csv:
        write_csv(CSV_PATH)

    X, y = read_csv(CSV_PATH)
    out_dir.mkdir(parents=True, exist_ok=True)

    models = [
        ("dt", "iris-dt", "tree",
         DecisionTreeClassifier(max_depth=4, random_state=0)),
        ("canary", "iris-canary", "linear",
         LogisticRegression(max_iter=10_000, random_state=0)),
        ("challenger", "iris-challenger", "forest",
         RandomForestClassifier(n_estimators=25, max_depth=5, random_state=0)),
    ]

    expected = {
        "csv": "iris.csv",
        "features": list(FEATURES),
        "rows": int(len(y)),
        "trained_with": f"scikit-learn {sklearn.__version__}",
        "models": {},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        for stem, name, kind, est in models:
            est.fit(X, y)
            accuracy = float(est.score(X, y))
            write_json(out_dir / f"{stem}.json", export(name, kind, est))
            expected["models"][stem] = {
                "file": f"{stem}.json",
                "name": name,
                "classes": [str(c) for c in est.classes_],
                "training_accuracy": accuracy,
                "labels": [str(v) for v in est.predict(X)],
                "probabilities": floats(est.predict_proba(X)),
            }
            print(f"{name}\t{kind}\ttraining accuracy {accuracy:.4f}")
    write_json(out_dir / "expected.json", expected)


if __name__ == "__main__":
    main()
