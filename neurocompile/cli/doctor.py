"""`neurocompile doctor`: versions, whether Lava runs, whether a GPU is visible."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version

import click
import numpy as np

from neurocompile.backends.lava.compat import import_lava
from neurocompile.cli import cli

PACKAGES = ["torch", "nir", "nirtorch", "numpy", "lava-nc"]


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def lava_smoke_test() -> tuple[bool, str]:
    """Run one LIF neuron driven through a Dense synapse for 4 steps in Lava fixed_pt."""
    try:
        import_lava()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIF

        source = RingBuffer(data=np.ones((1, 4), dtype=np.int32))
        dense = Dense(weights=np.array([[64]]))
        lif = LIF(shape=(1,), du=4095, dv=0, vth=1_000_000)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        try:
            lif.run(condition=RunSteps(num_steps=4), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            v = int(lif.v.get()[0])
        finally:
            lif.stop()
        # Spikes of steps 1..3 arrive at steps 2..4 (one-step delay), each adds 64 << 6 to v.
        expected = 3 * (64 << 6)
        return v == expected, f"LIF v after 4 steps = {v} (expected {expected})"
    except Exception as exc:  # report, never crash
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0]


def gpu_status() -> str:
    import torch

    if torch.cuda.is_available():
        return f"yes: {torch.cuda.get_device_name(0)}"
    return "no"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def doctor(as_json):
    """Report package versions, whether Lava runs, and whether a GPU is visible."""
    report = {"python": platform.python_version()}
    report.update({name: package_version(name) for name in PACKAGES})
    lava_ok, lava_detail = lava_smoke_test()
    report["lava_runs"] = lava_ok
    report["lava_detail"] = lava_detail
    report["gpu"] = gpu_status()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key:12s} {value if value is not None else 'not installed'}")
