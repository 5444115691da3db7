"""The driver both training-throughput peers share (``train_snntorch.py``, ``train_spikingjelly.py``): read the
data and the config ``tools/bench_training.py`` wrote, train one epoch, print one JSON line. Imports only torch and
NumPy: it runs in the peers' venvs (the scripts' folder is on ``sys.path``)."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch


def run(library: str, rule: str, build: Callable, train_epoch: Callable, accuracy: Callable, notes: str, argv) -> None:
    """``argv``: DATA.npz CONFIG.json. ``build(config)`` makes the network, ``train_epoch(net, opt, x, y, config)``
    trains it (``(seconds, mean loss)``), ``accuracy(net, x, y)`` tests it; the figures go to stdout as JSON."""
    data_path, config_path = argv
    config = json.loads(Path(config_path).read_text())
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    data = np.load(data_path)
    x_train, x_test = (torch.from_numpy(data[k]).float() for k in ("x_train", "x_test"))
    y_train, y_test = (torch.from_numpy(data[k]).long() for k in ("y_train", "y_test"))
    net = build(config)
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
    train_s, train_loss = train_epoch(net, opt, x_train, y_train, config)
    train_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the test pass
    result = {
        "library": f"{library}=={version(library)}",
        "rule": rule,
        "train_s": train_s,
        "samples_per_s": len(x_train) / train_s,
        "train_loss": train_loss,
        "test_acc": accuracy(net, x_test, y_test),
        "train_peak_bytes": train_peak,
        "notes": notes,
    }
    print(json.dumps(result))
