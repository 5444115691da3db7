"""ANN-to-SNN conversion on digits: ReLU ANNs from PyTorch and scikit-learn, converted and compared.

    .venv/bin/python tools/convert_report.py [--steps 16,32,64] [--plot docs/img/convert_accuracy.png] [--json]

The PyTorch ANNs (an MLP, a CNN with average pooling, the same CNN with max pooling, and an MLP with a
Softmax output) train on the digits training split (fixed seeds, a few seconds each) and are exported
with ``torch.onnx.export`` into a temporary folder; scikit-learn's ``MLPClassifier`` is the file skl2onnx
wrote (``tests/fixtures/onnx/skl2onnx``). Each is converted as it is with
:func:`neurocompile.onnx.convert.convert`; the table compares the ANN (onnxruntime) with the SNN on the
float reference (analog input current), the float reference on spike inputs and the fixed-point CPU
backend (spike inputs) on the 360 test digits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from neurocompile.data import load_digits_images
from neurocompile.onnx.convert import convert, evaluate, plot_accuracy

ROOT = Path(__file__).resolve().parents[1]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn(pool: type[nn.Module] = nn.AvgPool2d) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        pool(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def cnn_max_pool() -> nn.Module:
    return cnn(nn.MaxPool2d)


def with_softmax(model: nn.Module) -> nn.Module:
    """The trained ``model`` with a Softmax output, as exported for inference."""
    return nn.Sequential(model, nn.Softmax(dim=1))


# name: (the ANN to train, what the exported model adds to it)
MODELS = {
    "mlp": (mlp, None),
    "cnn": (cnn, None),
    "cnn-maxpool": (cnn_max_pool, None),
    "mlp-softmax": (mlp, with_softmax),
}
SKLEARN = ROOT / "tests" / "fixtures" / "onnx" / "skl2onnx" / "mlp_classifier" / "model.onnx"


def train(make, epochs: int = 20, seed: int = 0) -> nn.Module:
    """``make()`` trained with Adam on the digits training split (minibatches of 64, images [N, 1, 8, 8]
    in [0, 1]); the seed fixes the initial weights and the batch order."""
    torch.manual_seed(seed)
    model = make()
    x, y = load_digits_images("train")
    x, y = torch.as_tensor(x).unsqueeze(1), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> Path:
    """``torch.onnx.export`` (TorchScript exporter) with a dynamic batch dimension."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.zeros(1, 1, 8, 8),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}},
            dynamo=False,
        )
    return path


def onnx_files(folder: Path) -> dict[str, Path]:
    """Every model of the report as an ONNX file: the PyTorch ANNs trained and exported into ``folder``."""
    files = {}
    for seed, (name, (make, head)) in enumerate(MODELS.items()):
        model = train(make, seed=seed)
        files[name] = export_onnx(head(model) if head else model, folder / f"{name}.onnx")
    return {**files, "skl2onnx-mlp": SKLEARN}


def measure(steps, percentile: float = 99.9) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        files = onnx_files(Path(tmp))
        return {
            name: evaluate(convert(path, percentile=percentile), steps, progress=True) for name, path in files.items()
        }


def table(results: dict) -> str:
    head = f"{'model':<13} {'T':>4} {'ANN':>7} {'float':>7} {'float spikes':>13} {'cpu (fixed)':>12}"
    rows = [head, "-" * len(head)]
    for name, report in results.items():
        ann = report["accuracy"]["ann"]
        for row in report["accuracy"]["snn"]:
            rows.append(
                f"{name:<13} {row['steps']:>4} {100 * ann:>6.2f}% {100 * row['float']:>6.2f}% "
                f"{100 * row['float_spikes']:>12.2f}% {100 * row['cpu']:>11.2f}%"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="16,32,64", help="comma-separated T values")
    parser.add_argument("--percentile", type=float, default=99.9)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "convert_accuracy.png")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = measure([int(t) for t in args.steps.split(",")], args.percentile)
    print(json.dumps(results, indent=2) if args.json else table(results))
    plot_accuracy(results, args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
