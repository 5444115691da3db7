"""lava-dl's netx as the oracle of `neurocompile export --to netx`: its own loader reads the file, Lava's
simulation runs it (``Loihi2SimCfg``, fixed point) on given input spikes, and every layer's spikes and voltages
are written out.

It runs in the throwaway environment ``tools/netx_env.sh`` makes (lava-dl 0.6.0 beside lava-nc 0.10.0), never
the project's ``.venv``; ``tests/hardware/test_netx.py`` calls it and compares with the CPU backend::

    /tmp/netx-venv/bin/python tools/netx_check.py NET.net INPUT.npy OUT.npz

INPUT.npy: ``[T, *input_shape]`` spikes (0/1) in the program's layout ((C, H, W) for images). OUT.npz: for block
``i`` of the network (netx's layers after the input), ``<i>.spikes`` and ``<i>.v``, ``[T, *shape]`` in the
program's layout ((C, H, W) for a conv block, flat for a dense one), and ``blocks``, the blocks' class names.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def import_netx():
    """lava-dl's netx, imported after the project's Lava compatibility step (``backends/lava/compat.py``)."""
    sys.path.insert(0, str(ROOT))  # neurocompile.errors, which the compatibility step raises
    spec = importlib.util.spec_from_file_location("lava_compat", ROOT / "backends" / "lava" / "compat.py")
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    compat.import_lava()
    _stub_torchvision()
    from lava.lib.dl import netx

    return netx


def _stub_torchvision() -> None:
    """An empty ``torchvision`` where none imports: slayer's package imports its object-detection models, which
    import torchvision; netx never calls them, and no torchvision build for the CPU torch here is installable."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        stub = types.ModuleType("torchvision")
        for name in ("ops", "transforms"):
            setattr(stub, name, types.ModuleType(f"torchvision.{name}"))
            sys.modules[f"torchvision.{name}"] = getattr(stub, name)
        sys.modules["torchvision"] = stub


def to_lava(x: np.ndarray, lava_shape: tuple[int, ...]) -> np.ndarray:
    """``[T, *shape]`` in the program's layout -> ``[*lava_shape, T]``: (C, H, W) becomes (W, H, C) where the port
    is an image, anything else is flattened in the program's (C-) order."""
    x = x.transpose(0, 3, 2, 1) if len(lava_shape) == 3 else x.reshape(x.shape[0], -1)
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def from_lava(x: np.ndarray) -> np.ndarray:
    """``[T, *lava_shape]`` -> ``[T, *shape]`` in the program's layout."""
    return x.transpose(0, 3, 2, 1) if x.ndim == 4 else x


def run(net_path: Path, spikes: np.ndarray) -> dict[str, np.ndarray]:
    """Every block's spikes and v at every step of ``spikes`` ([T, *input_shape]) through the netx network."""
    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    steps = spikes.shape[0]
    net = netx.hdf5.Network(net_config=str(net_path))
    print(net, flush=True)  # netx's own table of the blocks it built
    source = Source(data=to_lava(spikes, net.inp.shape).astype(np.int32))
    source.s_out.connect(net.inp)
    taps = []
    for block in net.layers:
        sink, monitor = Sink(shape=block.out.shape, buffer=steps), Monitor()
        block.out.connect(sink.a_in)
        monitor.probe(block.neuron.v, steps)
        taps.append((sink, monitor))
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        out = {"blocks": np.array([type(block).__name__ for block in net.layers])}
        for i, (block, (sink, monitor)) in enumerate(zip(net.layers, taps)):
            out[f"{i}.spikes"] = from_lava(np.moveaxis(sink.data.get(), -1, 0)).astype(np.uint8)
            v = monitor.get_data()[block.neuron.name]["v"]
            out[f"{i}.v"] = from_lava(np.asarray(v).reshape(steps, *block.neuron.v.shape)).astype(np.int64)
    finally:
        net.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("net", type=Path, help="the netx network (.net, HDF5)")
    parser.add_argument("input", type=Path, help="input spikes [T, *input_shape] (.npy)")
    parser.add_argument("output", type=Path, help="every block's spikes and v (.npz)")
    args = parser.parse_args()
    np.savez(args.output, **run(args.net, np.load(args.input)))


if __name__ == "__main__":
    main()
