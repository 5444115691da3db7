"""The Lava backend against independent oracles: the CPU simulator (``fixedpoint`` semantics),
the NIR paper's published Lava spike times, the float reference, and the OS process table.

Every Lava run forks a few OS processes and costs about a second: examples stay few and small.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocompile.errors import NeurocompileError
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from tests.helpers.program_strategies import programs_with_inputs
from tools.process_groups import AS_FROM_A_TERMINAL, group_members

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.lava


def lava_backend(*args, **kwargs):
    from neurocompile.backends.lava.backend import LavaBackend

    return LavaBackend(*args, **kwargs)


def cpu_backend(program):
    from neurocompile.backends.cpu import CpuBackend

    return CpuBackend(program)


def assert_same_recordings(lava_rec, cpu_rec):
    keys = sorted(lava_rec.arrays)
    assert keys, "nothing recorded"
    for key in keys:
        got = np.asarray(lava_rec.arrays[key]).astype(np.int64)
        want = np.asarray(cpu_rec.arrays[key]).astype(np.int64)
        assert got.shape == want.shape, f"{key}: shape {got.shape} != {want.shape}"
        if not np.array_equal(got, want):
            b, t, *idx = np.argwhere(got != want)[0]
            raise AssertionError(
                f"{key}: first difference at batch {b}, step {t}, neuron {idx}: lava {got[(b, t, *idx)]} cpu {want[(b, t, *idx)]}"
            )


def lava_children() -> list[int]:
    """Live child processes of this process, except Python's own shared-memory resource tracker."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z" and "resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


def assert_no_lava_processes(wait_s: float = 10.0) -> None:
    """No child process of this one is left (Lava's children may take a moment to exit)."""
    deadline = time.time() + wait_s
    while (multiprocessing.active_children() or lava_children()) and time.time() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []
    assert lava_children() == []


def feature_program(conv_exp: int = 1) -> FixedPointProgram:
    """Non-square conv with groups, stride, padding and dilation, a conv->conv chain into a
    readout, dense and sparse synapses with delays, a LIFReset population and a recurrent edge."""
    rng = np.random.default_rng(1)
    return FixedPointProgram(
        inputs=[InputPort("in", (4, 7, 6))],
        populations=[
            Population(
                "c1", (4, 4, 2), du=1000, dv=500, vth=20, bias_mant=np.zeros((4, 4, 2), np.int32), reset_interval=3
            ),
            Population("c2", (2, 4, 2), du=100, dv=50, vth=20, bias_mant=np.int32(-3), spiking=False),
            Population("d1", (5,), du=4095, dv=300, vth=30, bias_mant=np.arange(1, 6, dtype=np.int32), bias_exp=2),
        ],
        synapses=[
            Synapse(
                "s1",
                "in",
                "c1",
                "conv",
                rng.integers(-100, 100, (4, 2, 3, 2)).astype(np.int32),
                weight_exp=conv_exp,
                conv=ConvGeometry((4, 7, 6), (4, 4, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2),
            ),
            Synapse(
                "s1b",
                "c1",
                "c2",
                "conv",
                rng.integers(-100, 100, (2, 4, 1, 3)).astype(np.int32),
                weight_exp=conv_exp,
                conv=ConvGeometry((4, 4, 2), (2, 4, 2), padding=(0, 1)),
            ),
            Synapse(
                "s2",
                "c2",
                "d1",
                "dense",
                rng.integers(-100, 100, (5, 16)).astype(np.int32),
                delays=rng.integers(0, 4, (5, 16)).astype(np.int32),
            ),
            Synapse(
                "s3",
                "c1",
                "d1",
                "sparse",
                (rng.integers(-3, 3, (5, 32)) * 10).astype(np.int32),
                weight_exp=-1,
                delays=rng.integers(0, 3, (5, 32)).astype(np.int32),
            ),
            Synapse(
                "r",
                "d1",
                "d1",
                "dense",
                rng.integers(-7, 8, (5, 5)).astype(np.int32),
                num_weight_bits=4,
                recurrent=True,
            ),
        ],
        outputs=["d1"],
    ).validate()


def tiny_program(delay: int = 1) -> FixedPointProgram:
    return FixedPointProgram(
        [InputPort("in", (3,))],
        [Population("p", (2,), du=100, dv=100, vth=10, bias_mant=np.int32(0))],
        [Synapse("s", "in", "p", "dense", np.full((2, 3), 50, np.int32), delays=np.full((2, 3), delay, np.int32))],
        ["p"],
    ).validate()


# --- (a) program-level differential tests --------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=programs_with_inputs())
def test_random_programs_match_cpu_at_every_step(case):
    program, inputs = case
    lava_rec = lava_backend(program).run(inputs, record="all")
    assert_same_recordings(lava_rec, cpu_backend(program).run(inputs, record="all"))


# Population features beyond Lava's stock LIF (processes.LIFExtended): each drawn into programs that hold it.
EXTENSIONS = {
    "subtract": lambda pop: pop.reset == "subtract" and pop.spiking,
    "reset timing": lambda pop: pop.reset_timing != "same-step",
    "graded spikes": lambda pop: pop.payload_bits > 0,
}


@pytest.mark.parametrize("extension", sorted(EXTENSIONS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_programs_with_each_extension_match_cpu_at_every_step(extension, data):
    has = EXTENSIONS[extension]
    program, inputs = data.draw(programs_with_inputs().filter(lambda case: any(map(has, case[0].populations))))
    assert_same_recordings(
        lava_backend(program).run(inputs, record="all"), cpu_backend(program).run(inputs, record="all")
    )


@pytest.mark.parametrize("conv", ["conv", "sparse"])
def test_feature_program_matches_cpu(conv):
    """Both conv lowerings (Lava Conv with transposed, flipped kernels; an equivalent Sparse matrix)."""
    program = feature_program()
    x = (np.random.default_rng(2).random((2, 13, 4, 7, 6)) < 0.4).astype(np.uint8)
    lava_rec = lava_backend(program, conv=conv).run(x, record="all")
    assert lava_rec.spike_counts()["c1"] > 0 and lava_rec.spike_counts()["d1"] > 0
    assert_same_recordings(lava_rec, cpu_backend(program).run(x, record="all"))


def test_samples_are_independent_of_batch_order():
    """The graph is reused across samples: each sample must equal a fresh single-sample run."""
    program = feature_program()
    x = (np.random.default_rng(3).random((2, 6, 4, 7, 6)) < 0.5).astype(np.uint8)
    both = lava_backend(program).run(x, record=["c1", "d1"])
    second = lava_backend(program).run(x[1:], record=["c1", "d1"])
    for key in second.arrays:
        assert np.array_equal(both.arrays[key][1], second.arrays[key][0]), key


# --- (b) the NIR paper's single-LIF experiment ---------------------------------------------


def test_single_lif_spikes_where_the_paper_says(nir_paper_dir):
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.frontend.nir_io import load_graph

    program, _ = compile_graph(load_graph(nir_paper_dir / "lif_norse.nir"))
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.uint8)
    x = spikes.reshape(1, -1, 1)
    rec = lava_backend(program).run(x)
    out = rec.output_spikes()[0].reshape(len(spikes))
    assert np.flatnonzero(out).tolist() == [461, 511, 711, 761]


# --- (c) every loadable NIR paper graph, end to end ----------------------------------------


PAPER_GRAPHS = {
    "lif_norse.nir": 60,
    "two_lif_neurons.nir": 60,
    "cnn_sinabs.nir": 4,
    "braille_noDelay_bias_zero.nir": 30,
    "braille_noDelay_noBias_subtract.nir": 30,
}


@pytest.mark.parametrize("name", sorted(PAPER_GRAPHS))
def test_nir_paper_graphs_match_cpu(name, nir_paper_dir):
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.frontend.nir_io import load_graph

    program, _ = compile_graph(load_graph(nir_paper_dir / name))
    rng = np.random.default_rng(0)
    steps = PAPER_GRAPHS[name]
    inputs = {p.name: (rng.random((2, steps, *p.shape)) < 0.3).astype(np.uint8) for p in program.inputs}
    if len(inputs) == 1:
        inputs = next(iter(inputs.values()))
    record = "all" if name != "cnn_sinabs.nir" else [p.name for p in program.populations[-2:]]
    lava_rec = lava_backend(program).run(inputs, record=record)
    assert_same_recordings(lava_rec, cpu_backend(program).run(inputs, record=record))


# --- (d) floating_pt against the float reference -------------------------------------------


def test_floating_pt_matches_float_reference_one_step_later(nir_paper_dir):
    """A float program written from lif_norse.nir's parameters by hand (du=1: u is this step's
    input; dv = dt/tau; weights r*dt/tau*W) runs on Lava's float models and reproduces the
    float reference's voltage one step later (Lava's synaptic delay)."""
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.frontend.nir_io import load_graph

    graph = load_graph(nir_paper_dir / "lif_norse.nir")
    lif = graph.nodes["1"]
    affine = graph.nodes["0"]
    dt = 1e-4
    alpha = dt / float(np.ravel(lif.tau)[0])
    r = float(np.ravel(lif.r)[0])
    bias = alpha * (float(np.ravel(lif.v_leak)[0]) + r * float(np.ravel(affine.bias)[0]))
    float_program = FixedPointProgram(
        [InputPort("input", (1,))],
        [Population("1", (1,), du=1.0, dv=alpha, vth=float(np.ravel(lif.v_threshold)[0]), bias_mant=np.array([bias]))],
        [Synapse("w", "input", "1", "dense", np.asarray(affine.weight, dtype=float) * r * alpha)],
        ["1"],
        number_format="float",
    )
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)[:400]
    x = spikes.reshape(1, -1, 1)
    lava_rec = lava_backend(float_program, tag="floating_pt").run(x, record="all")
    ref = FloatReference(graph).run(x, record="all")
    v_ref = np.asarray(ref.arrays["1.v"], dtype=float).reshape(-1)
    v_lava = lava_rec.arrays["1.v"].reshape(-1)
    assert v_ref.max() > 0.05
    np.testing.assert_allclose(v_lava[1:], v_ref[:-1], rtol=1e-5, atol=1e-6)
    assert v_lava[0] == 0
    s_ref = np.asarray(ref.arrays["1.spikes"]).reshape(-1)
    assert np.array_equal(lava_rec.arrays["1.spikes"].reshape(-1)[1:], s_ref[:-1])


def test_floating_pt_of_an_integer_program_tracks_the_cpu_backend(nir_paper_dir):
    """The float view of a quantized program (same numbers without integer rounding) spikes
    within a step or two of the fixed-point run."""
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.frontend.nir_io import load_graph

    program, _ = compile_graph(load_graph(nir_paper_dir / "lif_norse.nir"))
    x = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.uint8).reshape(1, -1, 1)
    out = lava_backend(program, tag="floating_pt").run(x).output_spikes().reshape(-1)
    fixed = np.flatnonzero(cpu_backend(program).run(x).output_spikes().reshape(-1))
    floats = np.flatnonzero(out)
    assert len(floats) == len(fixed) == 4
    assert np.abs(floats - fixed).max() <= 2


# --- (e) no orphans after many runs, failed ones included -----------------------------------


def test_twenty_runs_with_failures_leave_no_processes():
    from neurocompile.backends.lava.backend import LavaBackend

    class FailsBetweenSamples(LavaBackend):
        def _reset_state(self, pops, conns):
            raise RuntimeError("on purpose, while the runtime is up")

    x = np.ones((2, 4, 3), dtype=np.uint8)
    outcomes = []
    for i in range(20):
        kind = i % 4
        try:
            if kind == 0:
                rec = LavaBackend(tiny_program()).run(x)
                outcomes.append(int(rec.output_spikes().sum()))
            elif kind == 1:
                backend = LavaBackend(tiny_program())
                backend.program.synapses[0].delays[:] = 70  # Lava's DelayDense raises inside its process
                backend.run(x)
            elif kind == 2:
                FailsBetweenSamples(tiny_program()).run(x)
            else:
                LavaBackend(tiny_program()).run(np.ones((1, 4, 5)))  # wrong shape: fails before Lava starts
            if kind != 0:
                outcomes.append("no error")
        except NeurocompileError as exc:
            outcomes.append("neurocompile" if kind in (1, 3) else repr(exc))
        except RuntimeError as exc:
            outcomes.append("runtime" if kind == 2 else repr(exc))
    expected = {1: "neurocompile", 2: "runtime", 3: "neurocompile"}
    for i, got in enumerate(outcomes):
        if i % 4 == 0:
            assert isinstance(got, int) and got > 0, (i, got)
        else:
            assert got == expected[i % 4], (i, got)
    assert_no_lava_processes()


# --- (f) Ctrl-C ----------------------------------------------------------------------------


def test_ctrl_c_leaves_no_orphans():
    # SIGINT as a terminal delivers it, whatever this process inherited (started as a background job of a
    # non-interactive shell, as `(make test &)` is, it ignores SIGINT, and so would the script)
    script = textwrap.dedent(
        """
        import numpy as np
        from neurocompile.backends.lava.backend import LavaBackend
        from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
        program = FixedPointProgram([InputPort("in", (3,))], [Population("p", (2,), du=100, dv=100, vth=10, bias_mant=np.int32(0))],
                                    [Synapse("s", "in", "p", "dense", np.full((2, 3), 50, np.int32))], ["p"]).validate()
        try:
            LavaBackend(program).run(np.ones((1, 200000, 3), dtype=np.uint8))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise SystemExit(130)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL + script],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while len(group_members(proc.pid)) < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(group_members(proc.pid)) >= 4, "Lava did not start its processes"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out
    deadline = time.time() + 10
    while group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert group_members(proc.pid) == []


def test_hardware_flag_selects_the_loihi2_hardware_config():
    """``hardware=True`` is a configuration switch only (no Loihi system here)."""
    from neurocompile.backends.lava.compat import import_lava

    import_lava()
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg

    assert isinstance(lava_backend(tiny_program(), hardware=True)._run_cfg(), Loihi2HwCfg)
    sim = lava_backend(tiny_program())._run_cfg()
    assert isinstance(sim, Loihi2SimCfg) and sim.select_tag == "fixed_pt"


# --- (g) SIGKILL (other signals: tests/cli/test_signals.py) -----------------------------------------------------------------

LONG_RUN = textwrap.dedent(
    """
    import numpy as np
    from neurocompile.backends.lava.backend import LavaBackend
    from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
    program = FixedPointProgram([InputPort("in", (3,))], [Population("p", (2,), du=100, dv=100, vth=10, bias_mant=np.int32(0))],
                                [Synapse("s", "in", "p", "dense", np.full((2, 3), 50, np.int32))], ["p"]).validate()
    LavaBackend(program).run(np.ones((1, 200000, 3), dtype=np.uint8))
    """
)


def _started(argv, settle_s: float = 1.0) -> subprocess.Popen:
    """``argv`` in a new process group, ``settle_s`` after the group has 4 processes (Lava has started)."""
    proc = subprocess.Popen(
        argv, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 90
    while len(group_members(proc.pid)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert len(group_members(proc.pid)) >= 4, "Lava did not start its processes"
    time.sleep(settle_s)
    return proc


def _gone(pgid: int, wait_s: float = 10.0) -> bool:
    deadline = time.time() + wait_s
    while group_members(pgid) and time.time() < deadline:
        time.sleep(0.1)
    return group_members(pgid) == []


def test_lava_workers_die_with_a_killed_main_process():
    """SIGKILL to the main process alone (no handler can run): its Lava workers die within 5 s."""
    proc = _started([sys.executable, "-c", LONG_RUN])
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _gone(proc.pid, wait_s=5.0)
    finally:
        if group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
