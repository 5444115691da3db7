"""The CPU backend's plastic path: independent learners (batch entry b is learner b), step by step.

:class:`PlasticRunner` checks the program and the inputs, runs the whole time loop in the C kernel
(:mod:`.plastic_kernel`) or, for what that does not handle, in the NumPy loop (:mod:`.plastic_reference`), and
builds the recording. The step order and what each records: ``docs/backends.md`` ("The plastic path").
"""

from __future__ import annotations

import time

import numpy as np

from neurocompile.backends.base import check_inputs
from neurocompile.backends.learners import INT32_MAX
from neurocompile.backends.plastic_kernel import kernel_run, load_kernel
from neurocompile.backends.plastic_reference import reference_run
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram
from neurocompile.ir.recording import Recording

# --- learners --------------------------------------------------------------------------------


# --- the runner ------------------------------------------------------------------------------


class PlasticRunner:
    """Runs a plastic program for independent learners (``programs``: one per learner, or one for all)."""

    def __init__(self, programs: list[FixedPointProgram], shared: bool):
        self.programs = programs
        self.program = programs[0]
        self.shared = shared  # one program for every learner of a batch
        prog = self.program
        for syn in prog.synapses:
            if prog.number_format == "float" and syn.kind == "conv":
                raise NeurocompileError(f"cpu backend: conv synapse '{syn.name}' in a plastic float program")
        self.n = {p.name: int(np.prod(p.shape)) for p in prog.inputs}
        self.n.update({p.name: p.size for p in prog.populations})
        for syn in prog.synapses:
            if syn.kind != "conv" and np.shape(syn.weights) != (self.n[syn.target], self.n[syn.source]):
                raise NeurocompileError(
                    f"synapse '{syn.name}': weights shape {np.shape(syn.weights)} != "
                    f"({self.n[syn.target]}, {self.n[syn.source]})"
                )
        self.kernel_reason = self._kernel_obstacle()

    def _kernel_obstacle(self) -> str | None:
        """Why the C kernel cannot run this program (None: it can)."""
        if self.program.number_format == "float":
            return "a float program"
        for pop in self.program.populations:
            if pop.reset == "subtract" or pop.reset_timing != "same-step" or pop.payload_bits:
                return f"population '{pop.name}' resets by subtraction, with snnTorch's timing or sends graded spikes"
        for syn in self.program.synapses:
            if syn.kind == "conv":
                return f"conv synapse '{syn.name}'"
            if syn.delays is not None and np.any(syn.delays):
                return f"delays on synapse '{syn.name}'"
            if syn.signal != "error" and 256 * self.n[syn.source] > INT32_MAX:
                return f"synapse '{syn.name}' has too many sources for int32 sums"
        return None

    def inputs(self, inputs) -> tuple[dict[str, np.ndarray], int, int]:
        """Checked inputs: spike ports binary (uint8), target ports int32 integers ([B, T, n] each)."""
        prog = self.program
        ports = [(p.name, tuple(p.shape)) for p in prog.inputs]
        targets = frozenset(p.name for p in prog.inputs if p.kind == "target")
        arrays, batch, steps = check_inputs(ports, inputs, binary=True, backend="cpu", graded=targets)
        out = {}
        for port in prog.inputs:
            arr = arrays[port.name].reshape(batch, steps, -1)
            dtype = np.int32 if port.kind == "target" else np.uint8
            out[port.name] = np.ascontiguousarray(arr if port.kind == "target" else arr != 0, dtype=dtype)
        if not self.shared and batch != len(self.programs):
            raise NeurocompileError(
                f"cpu backend: {len(self.programs)} programs (one per learner) but a batch of {batch} input streams"
            )
        return out, batch, steps

    def run(self, inputs, record=None, checkpoint_every: int | None = None) -> Recording:
        start = time.perf_counter()
        if checkpoint_every is not None and (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, (int, np.integer))
            or checkpoint_every < 1
        ):
            raise NeurocompileError(f"cpu backend: checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
        checkpoint_every = None if checkpoint_every is None else int(checkpoint_every)
        data, batch, steps = self.inputs(inputs)
        rec = self.program.recorded_variables(record)
        learners = self.programs * batch if self.shared else self.programs
        kernel = load_kernel() if self.kernel_reason is None else None
        stepping = time.perf_counter()
        if kernel is not None:
            arrays, finals = kernel_run(kernel, learners, data, batch, steps, rec, checkpoint_every)
        else:
            arrays, finals = reference_run(learners, data, steps, rec, checkpoint_every)
        run_s = time.perf_counter() - stepping
        prog = self.program
        recording = {}
        for node, variables in rec.items():
            for var in sorted(variables):
                key = f"{node}.{var}"
                if node in data:
                    recording[key] = data[node].reshape(batch, steps, *prog.source_shape(node))
                elif var in ("spikes", "u", "v"):
                    recording[key] = arrays[key].reshape(batch, steps, *prog.source_shape(node))
                elif key in arrays:  # weights only with checkpoint_every
                    recording[key] = arrays[key]
        meta = {
            "schedule": "plastic",
            "number_format": prog.number_format,
            "learning_kernel": "c" if kernel is not None else "reference",
            "batch": batch,
            "steps": steps,
            "learners": batch,
            "spike_rate": {p.name: float(arrays[f"{p.name}.spikes"].mean()) for p in prog.populations},
            "input_rate": {p.name: float(data[p.name].mean()) for p in prog.spike_ports()},
            "programs": [learners[b].with_weights({name: w[b] for name, w in finals.items()}) for b in range(batch)],
        }
        if kernel is None:
            meta["learning_kernel_reason"] = self.kernel_reason or "the C kernel could not be built"
        if checkpoint_every:
            meta["checkpoint_steps"] = list(range(checkpoint_every, steps + 1, checkpoint_every))
        meta["wall_s"] = time.perf_counter() - start
        meta["timing"] = {"total_s": meta["wall_s"], "run_s": run_s}  # as Lava's: run_s is the stepping
        return Recording(recording, list(prog.outputs), "cpu", meta)


# --- the reference loop ----------------------------------------------------------------------


# --- the C kernel ----------------------------------------------------------------------------
