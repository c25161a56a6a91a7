"""Compare two model directories (the shipped one and a fresh training run).

Labels must be equal and every number within a relative 1e-9: the same
scikit-learn on another CPU may differ in the last bits of an iterative
solver, and that is not a change of the model.
"""
import json
import math
import sys
from pathlib import Path


def close(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            raise SystemExit(f"{path}: keys differ: {sorted(a)} vs {sorted(b)}")
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise SystemExit(f"{path}: lengths differ: {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            raise SystemExit(f"{path}: {a} vs {b}")
    elif a != b:
        raise SystemExit(f"{path}: {a!r} vs {b!r}")


def main():
    shipped, fresh = Path(sys.argv[1]), Path(sys.argv[2])
    # stateful.json is derived from canary.json by a Go test
    # (stages/model/evaluator, TestStatefulIrisFile), not trained.
    names = sorted(p.name for p in shipped.glob("*.json") if p.name != "stateful.json")
    for name in names:
        close(json.loads((shipped / name).read_text()), json.loads((fresh / name).read_text()), name)
    print(f"{len(names)} model files match a fresh training run")


if __name__ == "__main__":
    main()
