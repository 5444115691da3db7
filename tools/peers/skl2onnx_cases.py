"""scikit-learn's MLPClassifier on the digits, written by skl2onnx as it writes it (runs in a peer venv).

    python skl2onnx_cases.py OUT TEST_FRACTION SPLIT_SEED

The classifier trains on the project's digits training split (``neurocompile.data``'s fraction and
seed, passed in: nothing here imports neurocompile) and is converted with skl2onnx's defaults: a Cast
of the input, MatMul/Add/Relu layers, a Softmax, and two outputs, the label (ArgMax branch) and the
probabilities (a ZipMap). ``OUT/mlp_classifier/{model.onnx, meta.json}``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def main(out: Path, test_fraction: float, split_seed: int) -> None:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32).reshape(len(digits.target), -1)
    idx = np.arange(len(digits.target))
    train, test = train_test_split(idx, test_size=test_fraction, random_state=split_seed, stratify=digits.target)
    model = MLPClassifier((64,), max_iter=500, random_state=0).fit(x[np.sort(train)], digits.target[np.sort(train)])
    case = out / "mlp_classifier"
    case.mkdir(parents=True, exist_ok=True)
    (case / "model.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
    meta = {
        "library": "skl2onnx",
        "versions": {name: version(name) for name in ("scikit-learn", "skl2onnx", "onnx")},
        "model": "MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0)",
        "test_accuracy": float(model.score(x[np.sort(test)], digits.target[np.sort(test)])),
    }
    (case / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
