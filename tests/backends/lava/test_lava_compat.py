"""The Python 3.11 compatibility step for lava-nc 0.10.0, and a tiny Lava network."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from neurocompile.backends.lava import compat as lava_compat


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_lava_fails_without_the_patch_and_imports_with_it():
    assert lava_compat.needs_patch()  # the project runs on Python 3.11
    plain = run_python("import lava.magma.core.process.process")
    assert plain.returncode != 0
    assert "mutable default" in plain.stderr and "ByteEncoder" in plain.stderr
    patched = run_python(
        """
        from neurocompile.backends.lava.compat import import_lava
        import_lava()
        from lava.magma.compiler.var_model import ByteEncoder, CoreEncoder
        a, b = CoreEncoder(), CoreEncoder()
        assert a.x is b.x  # shared default instance, as on Python 3.10
        print("ok")
        """
    )
    assert patched.returncode == 0, patched.stderr
    assert patched.stdout.strip() == "ok"


def test_lava_imports_after_multiprocessing_was_used():
    """A progress bar (tqdm takes a multiprocessing lock) before Lava's first import must not break it."""
    result = run_python(
        """
        import multiprocessing, tqdm
        for _ in tqdm.tqdm(range(2), disable=False): pass
        assert multiprocessing.get_start_method(allow_none=True) is not None
        from neurocompile.backends.lava.compat import import_lava
        import_lava()
        print(multiprocessing.get_start_method())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fork"


def test_package_imports_without_lava():
    result = run_python(
        """
        import sys
        sys.modules["lava"] = None  # any `import lava...` now raises ImportError
        import neurocompile, neurocompile.cli, neurocompile.ir.program, neurocompile.semantics.discretization
        import neurocompile.backends, neurocompile.models
        from neurocompile.backends.lava.compat import import_lava
        from neurocompile.errors import BackendUnavailableError
        try:
            import_lava()
        except BackendUnavailableError as exc:
            print("unavailable:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unavailable: lava-nc 0.10.0 is not importable")


@pytest.mark.lava
def test_tiny_lava_network_matches_hand_computation():
    """RingBuffer -> Dense -> LIF in fixed_pt; values worked out by hand from Lava's LIF equations."""
    lava_compat.import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    spikes = np.zeros((1, 5), dtype=np.int32)
    spikes[0, 0] = 1
    source = RingBuffer(data=spikes)
    dense = Dense(weights=np.array([[10]]))
    lif = LIF(shape=(1,), du=2047, dv=1024, vth=1000)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    monitor_u, monitor_v = Monitor(), Monitor()
    monitor_u.probe(lif.u, 5)
    monitor_v.probe(lif.v, 5)
    try:
        lif.run(condition=RunSteps(num_steps=5), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        u = monitor_u.get_data()[lif.name]["u"][:, 0]
        v = monitor_v.get_data()[lif.name]["v"][:, 0]
    finally:
        lif.stop()
    # Step 1: the spike is sent; step 2: it arrives, u = 10 << 6 = 640, v = 640.
    # Step 3: u = 640 * (4096 - 2048) >> 12 = 320; v = (640 * 3072 >> 12) + 320 = 480 + 320 = 800.
    # Step 4: u = 160; v = 600 + 160 = 760.  Step 5: u = 80; v = 570 + 80 = 650.
    assert u.tolist() == [0, 640, 320, 160, 80]
    assert v.tolist() == [0, 640, 800, 760, 650]
