"""Lava backend: lower a :class:`~neurocompile.ir.program.FixedPointProgram` to a Lava process graph and run it.

One Lava process per program element (``LIFReset`` or ``processes.LIFExtended`` per population, ``Dense``,
``Sparse`` or ``Conv`` per synapse, taps for the recordings) in Lava's ``(W, H, C)`` layout, one graph per block
of samples (per learner for a plastic program), run with ``fixed_pt``, ``floating_pt`` (the float program) or
``hardware=True`` (Loihi 2, untested). The lowering table, layouts, extensions, samples, floating_pt, learning,
hardware and shutdown: ``docs/lava-backend.md``.
"""

from __future__ import annotations

import math
import time

import numpy as np
from tqdm import tqdm

from neurocompile.backends.base import check_inputs
from neurocompile.backends.lava.compat import import_lava
from neurocompile.backends.lava.learning import LearningGraph
from neurocompile.backends.lava.lowering import (
    connect,
    connection_process,
    conv_as_matrix,
    from_lava,
    lava_order,
    lava_shape,
    lower_taps,
    to_lava,
)
from neurocompile.backends.lava.session import Session
from neurocompile.errors import NeurocompileError
from neurocompile.hardware.loihi2 import extensions
from neurocompile.ir.program import VTH_BITS, FixedPointProgram, Population, Synapse
from neurocompile.ir.recording import Recording
from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics.float_form import float_program_of

TAGS = ("fixed_pt", "floating_pt")
# Input values held by one process graph (samples are preloaded back to back); larger batches
# run in blocks, one graph each.
MAX_BLOCK_VALUES = 2**24


# --- layouts -------------------------------------------------------------------------------


# --- the backend ---------------------------------------------------------------------------


class LavaBackend:
    """Run a program on Lava's CPU simulator (``fixed_pt`` or ``floating_pt``) or a Loihi 2 chip.

    ``conv``: "conv" lowers conv synapses to Lava's ``Conv`` process when its fixed_pt model
    reproduces them exactly (weight_exp >= 0), "sparse" always to ``Sparse``.
    """

    name = "lava"

    def __init__(
        self,
        program: FixedPointProgram,
        tag: str = "fixed_pt",
        hardware: bool = False,
        conv: str = "conv",
        stall_timeout_s: float = 120.0,
    ):
        if tag not in TAGS:
            raise NeurocompileError(f"lava backend: tag must be one of {TAGS}, got '{tag}'")
        if conv not in ("conv", "sparse"):
            raise NeurocompileError(f"lava backend: conv must be 'conv' or 'sparse', got '{conv}'")
        if program.number_format == "float" and tag == "fixed_pt":
            raise NeurocompileError("lava backend: a float program runs only with tag='floating_pt'")
        self.tag = tag
        self.fixed = tag == "fixed_pt"
        # floating_pt runs the float program an integer program stands for
        self.program = program.validate() if self.fixed else float_program_of(program.validate())
        self.hardware = hardware
        self.conv_mode = conv
        self.stall_timeout_s = float(stall_timeout_s)
        self.last_timing: dict = {}

    # --- parameters ---------------------------------------------------------------------

    def population_params(self, pop: Population) -> dict:
        """LIF parameters of a population: its integers (fixed_pt), or floats (floating_pt)."""
        bias = to_lava(np.array(np.broadcast_to(np.asarray(pop.bias_mant), tuple(pop.shape))), tuple(pop.shape))
        params = dict(shape=lava_shape(pop.shape), bias_exp=0)
        if self.fixed:
            # Lava's LIF has no non-spiking mode. A readout gets vth = 2**17, one past the 17-bit
            # register range: vth << 6 = 2**23 exceeds every v (clipped to 2**23 - 1), so it never
            # spikes or resets, which is what fixedpoint.lif_fixed_step(spiking=False) (and so the
            # CPU backend) computes. Lava's Python model accepts the value; a chip may not.
            vth = int(pop.vth) if pop.spiking else 2**VTH_BITS
            return params | dict(
                du=int(pop.du), dv=int(pop.dv), vth=vth, bias_mant=bias.astype(np.int32), bias_exp=int(pop.bias_exp)
            )
        vth = float(pop.vth) if pop.spiking else np.inf
        return params | dict(du=float(pop.du), dv=float(pop.dv), vth=vth, bias_mant=bias.astype(float))

    def _weights_in_lava_order(self, syn: Synapse, matrix):
        """Permute a [n_target, n_source] matrix (dense array or CSR) to Lava flattening."""
        rows = lava_order(self.program.source_shape(syn.target))
        cols = lava_order(self.program.source_shape(syn.source))
        return matrix[rows][:, cols]

    def matrix_weights(self, syn: Synapse, matrix) -> tuple[object, dict]:
        """Weights (in Lava order) and keyword arguments of a Dense/Sparse process for ``syn``."""
        from lava.utils.weightutils import SignMode
        from scipy.sparse import csr_matrix

        if self.fixed and syn.kind == "conv":
            # Conv semantics (no weight truncation) on Sparse: pass m << t with weight_exp - t,
            # so Lava's truncation of t low bits is a no-op and the sums are unchanged.
            t = fxp.truncated_bits(8, "mixed")
            kw = dict(weight_exp=int(syn.weight_exp) - t, num_weight_bits=8, sign_mode=SignMode.MIXED)
            return csr_matrix(matrix.astype(np.int32) * (1 << t)), kw
        if self.fixed:
            sign = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}
            kw = dict(weight_exp=int(syn.weight_exp), num_weight_bits=int(syn.num_weight_bits))
            return matrix.astype(np.int32), kw | dict(sign_mode=sign[syn.sign_mode])
        return matrix.astype(float), {}  # a float program (float_form.float_program_of)

    # --- lowering: one function per program element ------------------------------------

    def lower_population(self, pop: Population, run_steps: int):
        """Population -> ``LIFReset``, or ``processes.LIFExtended`` where it resets by subtraction or holds a
        bias back (``bias_onset``)."""
        params = self.population_params(pop)
        if pop.reset_interval > 0:
            timing = dict(reset_interval=int(pop.reset_interval), reset_offset=0)
        else:  # zeroes u and v before the first step of every sample (Lava's time_step is 1-based and keeps
            # counting across samples): no Var.set needed between samples
            timing = dict(reset_interval=run_steps, reset_offset=1)
        needs = extensions(pop)
        if not needs:
            from lava.proc.lif.process import LIFReset

            return LIFReset(name=pop.name, **timing, **params)
        if self.hardware:
            raise NeurocompileError(
                f"lava backend: population '{pop.name}' {' and '.join(needs)}, which needs a Loihi 2 custom "
                "neuron model (not provided); run it in simulation, or compile with --reset zero --bias-onset start"
            )
        from neurocompile.backends.lava.processes import LIFExtended

        firing = pop.firing()
        onset = dict(reset=pop.reset, reset_timing=firing["timing"], synaptic=firing["synaptic"])
        onset |= dict(payload_bits=firing["payload_bits"])
        onset |= dict(bias_onset=int(pop.bias_onset), sample_steps=run_steps)
        return LIFExtended(name=pop.name, **onset, **timing, **params)

    def lower_synapse(self, syn: Synapse, src, dst) -> tuple:
        """Synapse -> a Lava connection process from OutPort ``src`` to InPort ``dst``.

        Returns ``(process, buffer var name, zeros)``: what :meth:`_reset_state` clears.
        """
        graded = self.program.payload_bits(syn.source) > 0  # Lava's Conv takes binary spikes: Sparse multiplies
        use_conv = self.conv_mode == "conv" and (not self.fixed or int(syn.weight_exp) >= 0) and not graded
        if syn.kind == "conv" and syn.delays is None and use_conv:
            conn = self._lower_conv(syn)
            src.connect(conn.s_in)
            conn.a_out.connect(dst)
            return conn, "a_buf", np.zeros(conn.a_buf.shape)
        if syn.kind == "conv" and syn.delays is not None:
            raise NeurocompileError(f"synapse '{syn.name}': delays on conv synapses are not supported by Lava")
        sparse = syn.kind != "dense"  # a conv falls back to Sparse
        matrix = conv_as_matrix(syn) if syn.kind == "conv" else np.asarray(syn.weights)
        if syn.kind == "sparse":
            from scipy.sparse import csr_matrix

            matrix = csr_matrix(matrix)
        matrix, kw = self.matrix_weights(syn, self._weights_in_lava_order(syn, matrix))
        kw["num_message_bits"] = self.program.payload_bits(syn.source)
        delays = None if syn.delays is None else self._weights_in_lava_order(syn, np.asarray(syn.delays))
        conn = connection_process(syn, matrix, delays, sparse, kw)
        connect(src, conn, dst, self.program.source_shape(syn.source), self.program.source_shape(syn.target))
        return conn, "a_buff", np.zeros(conn.a_buff.shape)

    def _lower_conv(self, syn: Synapse):
        """Conv synapse -> ``lava.proc.conv.Conv`` (kernel flipped and in Lava's layout)."""
        from lava.proc.conv.process import Conv

        g = syn.conv
        src_shape, dst_shape = self.program.source_shape(syn.source), self.program.source_shape(syn.target)
        if tuple(g.input_shape) != tuple(src_shape) or tuple(g.output_shape) != tuple(dst_shape):
            raise NeurocompileError(
                f"synapse '{syn.name}': conv geometry {g.input_shape}->{g.output_shape} "
                f"does not match endpoint shapes {src_shape}->{dst_shape}"
            )
        if self.fixed:
            kernel = fxp.lava_conv_weights(fxp.effective_weights(syn.weights, syn.weight_exp, kind="conv"))
            kernel = kernel.astype(np.int32)
        else:
            kernel = fxp.lava_conv_weights(np.asarray(syn.weights, dtype=float))
        return Conv(
            weight=kernel,
            input_shape=lava_shape(g.input_shape),
            padding=tuple(g.padding[::-1]),
            stride=tuple(g.stride[::-1]),
            dilation=tuple(g.dilation[::-1]),
            groups=int(g.groups),
            num_weight_bits=8,
            weight_exp=0,
            name=syn.name,
        )

    def _build(self, data: dict[str, np.ndarray], run_steps: int, record: dict[str, set[str]]):
        """Create the process graph for a block of samples.

        ``data``: per input port, the block's samples in Lava layout ``[*lava_shape, n * run_steps]``.
        Returns (pops, conns, taps).
        """
        from lava.proc.io.source import RingBuffer

        prog = self.program
        out_ports = {port.name: RingBuffer(data=data[port.name]).s_out for port in prog.inputs}
        pops = {pop.name: self.lower_population(pop, run_steps) for pop in prog.populations}
        out_ports.update({name: lif.s_out for name, lif in pops.items()})
        conns = {
            syn.name: self.lower_synapse(syn, out_ports[syn.source], pops[syn.target].a_in) for syn in prog.synapses
        }
        return pops, conns, lower_taps(pops, record, run_steps)

    def _run_cfg(self):
        from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg

        if self.hardware:
            return Loihi2HwCfg(select_tag=self.tag)
        return Loihi2SimCfg(select_tag=self.tag)

    # --- running ------------------------------------------------------------------------

    def run(self, inputs, record=None, progress: bool = False, checkpoint_every: int | None = None) -> Recording:
        """Run every sample of ``inputs`` ([batch, time, *input_shape], one input port) in turn.

        Programs with several input ports take a dict ``{port name: array}``. A plastic program
        runs each batch entry as one learning stream (see :meth:`_learn`); ``checkpoint_every``
        records its weights every that many steps.
        """
        import_lava()
        prog = self.program
        ports = [(p.name, tuple(p.shape)) for p in prog.inputs]
        targets = frozenset(p.name for p in prog.inputs if p.kind == "target")
        arrays, batch, steps = check_inputs(ports, inputs, binary=self.fixed, backend="lava", graded=targets)
        if prog.plastic:
            return self._learn(arrays, batch, steps, record, checkpoint_every, progress)
        if checkpoint_every is not None:
            raise NeurocompileError("lava backend: checkpoint_every needs a plastic program (this one does not learn)")
        intervals = [p.reset_interval for p in prog.populations if p.reset_interval > 0]
        period = math.lcm(*intervals) if intervals else 1
        run_steps = -(-steps // period) * period
        spec = self.program.recorded_variables(record)
        dtype = np.int32 if self.tag == "fixed_pt" else np.float64
        out: dict[str, np.ndarray] = {}
        for name in [p.name for p in prog.inputs if p.name in spec]:
            out[f"{name}.spikes"] = (arrays[name] != 0).astype(np.uint8)
            del spec[name]
        for name, variables in spec.items():
            pop = prog.population(name)
            for var in variables:
                out[f"{name}.{var}"] = np.zeros(
                    (batch, steps) + tuple(pop.shape), dtype=np.uint8 if var == "spikes" else dtype
                )

        n_in = sum(int(np.prod(p.shape)) for p in prog.inputs)
        block = max(1, min(batch, MAX_BLOCK_VALUES // max(1, n_in * run_steps)))
        t0 = time.perf_counter()
        timing = {"compile_s": 0.0, "run_s": 0.0, "steps": 0}
        bar = None
        if progress:
            bar = tqdm(total=batch, desc=f"lava {self.tag}", unit="sample")
        try:
            for start in range(0, batch, block):
                stop = min(batch, start + block)
                self._run_block(arrays, start, stop, steps, run_steps, spec, out, timing, bar)
        finally:
            if bar is not None:
                bar.close()
        total = time.perf_counter() - t0
        self.last_timing = {
            "total_s": total,
            "compile_s": timing["compile_s"],
            "steps_per_s": timing["steps"] / timing["run_s"] if timing["run_s"] > 0 else None,
        }
        meta = {"tag": self.tag, "hardware": self.hardware, "timing": dict(self.last_timing)}
        return Recording(out, list(prog.outputs), f"lava-{self.tag}", meta)

    def _run_block(self, arrays, start, stop, steps, run_steps, spec, out, timing, bar) -> None:
        """Build one graph for samples [start, stop), run them one after another, stop Lava."""
        prog = self.program
        data = {}
        for port in prog.inputs:
            x = np.zeros(
                (stop - start, run_steps) + tuple(port.shape), dtype=np.int32 if self.tag == "fixed_pt" else float
            )
            x[:, :steps] = arrays[port.name][start:stop]
            x = to_lava(x, tuple(port.shape))  # [n, T, *lava_shape]
            x = x.reshape((-1,) + x.shape[2:])  # samples back to back
            data[port.name] = np.ascontiguousarray(np.moveaxis(x, 0, -1))
        tc = time.perf_counter()
        pops, conns, taps = self._build(data, run_steps, spec)
        session = Session(next(iter(pops.values())), self._run_cfg(), taps)
        try:
            session.start()
            timing["compile_s"] += time.perf_counter() - tc
            for b in range(start, stop):
                if b > start:
                    self._reset_state(pops, conns)
                ts = time.perf_counter()
                received = session.run_steps(run_steps)
                if b > start:  # the first sample's time includes Lava's start-up
                    timing["run_s"] += time.perf_counter() - ts
                    timing["steps"] += run_steps
                for (name, var), values in received.items():
                    pop = prog.population(name)
                    arr = from_lava(np.stack(values)[:steps], tuple(pop.shape))
                    key = f"{name}.{var}"
                    out[key][b] = arr if var != "spikes" or pop.payload_bits else arr != 0  # graded: counts
                if bar is not None:
                    bar.update(1)
        finally:
            session.close()

    def _learn(self, arrays, batch: int, steps: int, record, checkpoint_every: int | None, progress: bool) -> Recording:
        """Run a plastic program: batch entry b is learner b, one stream of ``steps`` steps in its own
        process graph. Records as ``run`` does, plus plastic-synapse traces and y values every step
        (streamed by taps) and weights every ``checkpoint_every`` steps (``<syn>.weights``
        [batch, n, n_post, n_pre], read with ``Var.get`` between chunks of steps: Lava's RefPorts cannot
        read a sparse Var); ``metadata["programs"]`` holds each learner's program with its final weights."""
        prog = self.program
        if checkpoint_every is not None and checkpoint_every < 1:
            raise NeurocompileError(f"lava backend: checkpoint_every must be >= 1, got {checkpoint_every}")
        spec = prog.recorded_variables(record)
        dtype = np.int32 if self.fixed else np.float64
        out: dict[str, np.ndarray] = {}
        for name in [p.name for p in prog.inputs if p.name in spec]:
            out[f"{name}.spikes"] = (arrays[name] != 0).astype(np.uint8)
            del spec[name]
        checkpoints = list(range(checkpoint_every, steps + 1, checkpoint_every)) if checkpoint_every else []
        programs, populations = [], {pop.name for pop in prog.populations}
        t0, run_s = time.perf_counter(), 0.0
        bar = None
        if progress:
            bar = tqdm(total=batch * steps, desc=f"lava {self.tag} learning", unit="step")
        try:
            for b in range(batch):
                data = {
                    port.name: np.ascontiguousarray(arrays[port.name][b].reshape(steps, -1).T.astype(dtype))
                    for port in prog.inputs
                }
                received, final, seconds = self._run_learner(data, steps, spec, checkpoints, bar)
                run_s += seconds
                for (name, var), values in received.items():
                    stacked = np.stack(values)
                    if name in populations:
                        stacked = from_lava(stacked[:steps], tuple(prog.population(name).shape))
                        stacked = stacked != 0 if var == "spikes" else stacked
                    key = f"{name}.{var}"
                    if key not in out:
                        out[key] = np.zeros((batch, *stacked.shape), dtype=np.uint8 if var == "spikes" else dtype)
                    out[key][b] = stacked
                programs.append(prog.with_weights(final))
        finally:
            if bar is not None:
                bar.close()
        meta = {"tag": self.tag, "programs": programs, "timing": {"total_s": time.perf_counter() - t0, "run_s": run_s}}
        if checkpoint_every:
            meta["checkpoint_steps"] = checkpoints
        return Recording(out, list(prog.outputs), f"lava-{self.tag}", meta)

    def _run_learner(self, data, steps: int, spec, checkpoints: list[int], bar) -> tuple[dict, dict, float]:
        """One learner's stream in its own process graph: ``(recorded values per tap key, final
        weights, seconds spent stepping)``. Weights at checkpoints are read between chunks of steps."""
        graph = LearningGraph(self, data, steps)
        taps = graph.taps(spec, steps)
        session = Session(next(iter(graph.pops.values())), self._run_cfg(), taps)
        received = {key: [] for key in taps}
        stops = {*checkpoints, steps}
        if bar is not None:  # chunks of about 2% of the stream, for the progress bar
            stops.update(range(max(1, steps // 50), steps, max(1, steps // 50)))
        run_s, done = 0.0, 0
        try:
            session.start()
            for stop in sorted(stops):
                started = time.perf_counter()
                for key, values in session.run_steps(stop - done, self.stall_timeout_s).items():
                    received[key] += values
                run_s += time.perf_counter() - started
                if bar is not None:
                    bar.update(stop - done)
                done = stop
                if stop in checkpoints:
                    for name, w in graph.weights().items():
                        if "weights" in spec.get(name, ()):
                            received.setdefault((name, "weights"), []).append(w)
            final = graph.weights()
        finally:
            session.close()
        return received, final, run_s

    def _reset_state(self, pops, conns) -> None:
        """Zero what outlives a sample: synapse buffers (spikes in flight) and the state of
        populations with their own ``reset_interval`` (the others reset by themselves)."""
        for pop in self.program.populations:
            if pop.reset_interval > 0:
                lif = pops[pop.name]
                lif.u.set(np.zeros(lif.u.shape))
                lif.v.set(np.zeros(lif.v.shape))
        for conn, var, zeros in conns.values():
            getattr(conn, var).set(zeros)
