"""Float reference simulator: runs any nir 1.0.8 graph in PyTorch; the oracle of the other backends.

Neuron nodes call the step functions of :mod:`neurocompile.semantics.discretization`; a step evaluates every node
once in topological order, feed-forward edges without delay, recurrent back-edges one step late (the contract:
``docs/conventions.md``). Graphs without back-edges run layer-major (neurons in the C kernel of
:mod:`.float_kernel` where it applies), others step-major. Recorded keys, ``synops`` and the schedules:
``docs/backends.md``.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from neurocompile.backends.base import check_inputs
from neurocompile.backends.float_kernel import kernel_form, load_kernel, run_population
from neurocompile.backends.native import CHUNK_BYTES
from neurocompile.errors import BackendUnavailableError, GraphError, NeurocompileError
from neurocompile.frontend.graph import flatten_graph, order_graph
from neurocompile.frontend.nir_io import single_shape
from neurocompile.ir.recording import Recording
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.primitives import (
    PRIMITIVES,
    Op,
    delay_steps,
    initial_state,
    kind_of,
    make_op,
    neuron_params,
)


def _fit(x: torch.Tensor, shape) -> torch.Tensor:
    """Reshape ``x`` [batch, ...] to [batch, *shape] when it has the same size but another layout."""
    if shape is None or x.dim() == 0 or tuple(x.shape[1:]) == tuple(shape):
        return x
    if x[0].numel() == int(np.prod(shape)):
        return x.reshape(x.shape[0], *shape)
    return x


def _declared_input(node) -> tuple[int, ...] | None:
    """The per-sample input shape a node declares (input_type, or C_in x input_shape for a conv)."""
    shape = single_shape(getattr(node, "input_type", None))
    weight = getattr(node, "weight", None)
    if shape is not None or weight is None:
        return shape
    w = np.shape(weight)
    if not hasattr(node, "input_shape"):  # Affine, Linear: the weight's last axis
        return tuple(w[:-2]) + (w[-1],)
    spatial = getattr(node, "input_shape", None)
    if spatial is not None and len(w) == np.size(spatial) + 2:
        groups = int(np.asarray(getattr(node, "groups", 1)).reshape(-1)[0])
        return (w[1] * groups, *(int(v) for v in np.ravel(spatial)))
    return None


# --- one object per node ---------------------------------------------------------------------


BLOCK_VALUES = 1 << 16  # values per state tensor when a stateful node steps a block of samples (fits in cache)


class _Node:
    """A node's step: ``reset(batch, steps)`` then ``step(x) -> out`` per time step; or ``sequence``, the
    node over a whole run at once (layer-major)."""

    variables: tuple[str, ...] = ("out",)
    stateful = False  # neurons and Delay: step through time; the others map all steps at once
    chunked = False  # a stateless node that maps all steps a chunk of rows at a time (weights, pooling)

    def __init__(self, name, node, conv: Convention, device, dtype):
        self.name, self.node, self.conv, self.device, self.dtype = name, node, conv, device, dtype
        self.in_shape = single_shape(getattr(node, "input_type", None))
        self.last: dict[str, torch.Tensor] = {}

    def tensor(self, value):
        return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype, device=self.device)

    def reset(self, batch: int, steps: int):
        self.batch, self.steps = batch, steps

    def step(self, x):
        raise NotImplementedError

    def sequence(self, x: torch.Tensor, batch: int, steps: int, keep) -> tuple[torch.Tensor, dict]:
        """The node over a whole run: ``x`` [batch*steps, ...] (sample-major: a sample's steps are
        consecutive rows; or a 0-d zero: no input) -> (output, {variable in ``keep``: [batch*steps, ...]}).
        A stateless node takes all steps as one batch (one GEMM for an Affine); a stateful one steps
        through time."""
        if self.stateful:
            return self._through_time(x, batch, steps, keep)
        self.reset(batch * steps, steps)
        out = self._in_chunks(x) if self.chunked else self.step(x)
        return out, {var: out for var in keep}

    def _in_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """``step`` over all rows of ``x``; on the CPU a chunk of rows at a time, each chunk's input and
        output about ``CHUNK_BYTES`` (a convolution over a cache-sized chunk runs 2-3x faster than over
        all steps at once; docs/benchmarks.md)."""
        if x.dim() == 0 or x.device.type != "cpu":
            return self.step(x)
        in_row = max(1, x[0].numel() * x.element_size())
        first = self.step(x[: max(1, CHUNK_BYTES // in_row)])
        if len(first) == len(x):
            return first
        rows = max(1, CHUNK_BYTES // (in_row + first[0].numel() * first.element_size()))
        out = torch.empty((len(x), *first.shape[1:]), dtype=first.dtype, device=first.device)
        out[: len(first)] = first
        for start in range(len(first), len(x), rows):
            out[start : start + rows] = self.step(x[start : start + rows])
        return out

    def _through_time(self, x, batch: int, steps: int, keep) -> tuple[torch.Tensor, dict]:
        """Step a block of samples through all steps, then the next block: on the CPU a block's state and
        the step's temporaries stay in cache (``BLOCK_VALUES``); on a GPU the block is the whole batch
        (fewer, larger kernel launches)."""
        per_sample = x[0].numel() if x.dim() else int(np.prod(self.in_shape or ()))
        block = batch if self.device.type == "cuda" else max(1, BLOCK_VALUES // max(per_sample, 1))
        x = x.reshape(batch, steps, *x.shape[1:]) if x.dim() else x
        results: dict[str, torch.Tensor] = {}
        for start in range(0, batch, block):
            rows = slice(start, min(start + block, batch))
            self.reset(rows.stop - start, steps)
            for t in range(steps):
                out = self.step(x[rows, t] if x.dim() else x)
                values = {**self.last, "out": out}
                for var in {"out", *keep}:
                    if var == "out" or values[var] is not out:  # a neuron's spikes are its output: stored once
                        _write(results, var, values[var], rows, t, (batch, steps))
        out = _sample_major(results["out"])
        return out, {var: _sample_major(results[var]) if var in results else out for var in keep}


STEP_ROWS = 64  # at most this many rows (a step of a few samples) are counted by a plain sum


def _nonzero_counts(x: torch.Tensor, binary: bool = False) -> torch.Tensor:
    """How often each element of ``x`` [samples, ...] is nonzero: ones times the 0/1 pattern, a GEMV
    (float counts of at most 2**24 samples at a time are exact), as float64 [...]. ``binary``: ``x`` holds
    only 0 and 1 (single spikes), so it is its own pattern. (On the CPU ``x`` is one chunk of rows.)"""
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    for rows in x.split(1 << 24):
        pattern = rows if binary else torch.ne(rows, 0, out=torch.empty_like(rows))
        pattern = pattern.reshape(rows.shape[0], -1)
        ones = torch.ones((1, rows.shape[0]), dtype=rows.dtype, device=rows.device)
        total += (ones @ pattern).reshape(x.shape[1:])
    return total


def _write(results: dict, var: str, value: torch.Tensor, rows: slice, t: int, lead: tuple[int, int]) -> None:
    """Store one step of a block in ``results[var]`` [batch, steps, ...] (allocated on first use); a 0-d
    value (no input, so none at any step) is kept as it is."""
    if value.dim() == 0:
        results[var] = value
        return
    if var not in results:
        results[var] = torch.empty((*lead, *value.shape[1:]), dtype=value.dtype, device=value.device)
    results[var][rows, t] = value


def _sample_major(value: torch.Tensor) -> torch.Tensor:
    """[batch, steps, ...] -> [batch*steps, ...] (a 0-d value as it is)."""
    return value.flatten(0, 1) if value.dim() else value


class _Identity(_Node):
    def step(self, x):
        return x


class _Linear(_Node):
    """A stateless primitive: the registry's op for the shape that arrives, plus its bias.

    Weighted ops also count synaptic operations: each nonzero input element times its number
    of nonzero outgoing weights.
    """

    chunked = True

    def __init__(self, *args):
        super().__init__(*args)
        self.in_shape = _declared_input(self.node)
        self.weighted = hasattr(self.node, "weight")
        self.binary_input = False  # set by FloatReference: the input is one neuron's single spikes (0 or 1)
        self.op: Op | None = None
        self.active: torch.Tensor | None = None

    def _resolve(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x`` in the op's input layout, building the op on first use (None: no input, shape unknown)."""
        if self.op is not None and x.dim() and x.shape[1:] == self.op.in_shape:  # every step after the first
            return x
        shape = self.op.in_shape if self.op is not None else self.in_shape
        x = _fit(x, shape)
        if x.dim() == 0:
            if shape is None:
                return None
            x = torch.zeros((self.batch, *shape), dtype=self.dtype, device=self.device)
        if self.op is None:
            self.op = make_op(self.name, self.node, shape or tuple(x.shape[1:]))
            self.weight = None if self.op.weight is None else self.tensor(self.op.weight)
            self.bias = None if self.op.bias is None else self.tensor(self.op.bias)
            self.fanout = None
        if x[0].numel() != int(np.prod(self.op.in_shape)):
            raise GraphError(
                f"receives {list(x.shape[1:])}, expects {list(self.op.in_shape)}", node=self.name, field="input_type"
            )
        return x.reshape(x.shape[0], *self.op.in_shape)

    def reset(self, batch, steps):
        super().reset(batch, steps)
        self.active = None

    def _count(self, x: torch.Tensor) -> None:
        """Add up how often each input element is nonzero (over batch and time; no sync per step)."""
        if self.fanout is None:
            probe = torch.ones((1, *x.shape[1:]), dtype=self.dtype, device=self.device, requires_grad=True)
            with torch.enable_grad():
                self.op.apply(probe, (self.weight != 0).to(self.dtype)).sum().backward()
            self.fanout = probe.grad[0].detach().to(torch.float64)  # exact integer counts
        if self.active is None:
            self.active = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
        if x.shape[0] > STEP_ROWS:
            self.active += _nonzero_counts(x, self.binary_input)
        else:  # one step of a few samples (step by step): two operations, not a GEMV's set-up
            self.active += (x if self.binary_input else x != 0).sum(0, dtype=torch.float64)

    @property
    def synops(self) -> int:
        """Nonzero inputs times their nonzero outgoing weights, so far."""
        return 0 if self.active is None else int(round(float((self.active.to(torch.float64) * self.fanout).sum())))

    def step(self, x):
        x = self._resolve(x)
        if x is None:
            return torch.zeros((), dtype=self.dtype, device=self.device)
        if self.weighted:
            self._count(x)
        y = self.op.apply(x, self.weight)
        return y if self.bias is None else y.add_(self.bias)  # only weighted ops have a bias: y is new


class _Delay(_Linear):
    """NIR ``Delay``: a ring buffer of ``max(delay steps) + 1`` inputs, read per element. A delay of
    at least the run's length outputs zeros, so it is cut to that length (no buffer past the run)."""

    stateful = True

    def reset(self, batch, steps):
        super().reset(batch, steps)
        self.buffer = None
        self.t = 0

    def _delays(self) -> torch.Tensor:
        """Per-element delays in steps, at most the run's length (seconds clipped first: no int64 overflow)."""
        seconds = np.minimum(self.op.delay, self.steps * self.conv.dt)
        return torch.as_tensor(np.minimum(delay_steps(seconds, self.conv.dt), self.steps), device=self.device)

    def step(self, x):
        x = self._resolve(x)
        if x is None:
            return torch.zeros((), dtype=self.dtype, device=self.device)
        if self.buffer is None:
            steps = self._delays()
            self.index = steps.unsqueeze(0).unsqueeze(0).expand(1, *x.shape)
            self.depth = int(steps.max()) + 1 if steps.numel() else 1
            self.buffer = torch.zeros((self.depth, *x.shape), dtype=self.dtype, device=self.device)
        self.buffer[self.t % self.depth] = x
        slot = (self.t - self.index) % self.depth  # per element; unwritten slots are still zero
        self.t += 1
        return torch.gather(self.buffer, 0, slot)[0]


class _Neuron(_Node):
    stateful = True

    def __init__(self, *args):
        super().__init__(*args)
        self.model = PRIMITIVES[type(self.node).__name__].neuron
        self.params = neuron_params(self.node, dtype=self.dtype, device=self.device)
        self.param_shape = np.broadcast_shapes(*(p.shape for p in self.params))  # torch's imports sympy (~0.4 s)
        if self.in_shape is None and len(self.param_shape) > 0:
            self.in_shape = tuple(self.param_shape)
        names = ["spikes"] if self.model.spiking else []
        self.variables = tuple(names + list(self.model.state._fields)[::-1])
        self.engine = "torch"  # what ran the last run: "c" (the kernel) or "torch" (the step functions)

    def reset(self, batch, steps):
        super().reset(batch, steps)
        self.state = None

    def sequence(self, x: torch.Tensor, batch: int, steps: int, keep) -> tuple[torch.Tensor, dict]:
        """The population over a whole run: in the C kernel (:mod:`.float_kernel`) where it takes the
        model, convention, dtype and input, else step by step in torch."""
        x = _fit(x, self.in_shape) if x.dim() else x
        form = self._kernel_form(x)
        self.engine = "torch" if form is None else "c"
        if form is None:
            return super().sequence(x, batch, steps, keep)
        results = run_population(form, x, batch, steps, "v" in keep, "i" in keep)
        return results["out"], {var: results[var] if var in results else results["out"] for var in keep}

    def _kernel_form(self, x: torch.Tensor):
        """The kernel's form of this population for input ``x``, or None if the kernel cannot run it."""
        if x.dim() == 0 or x.device.type != "cpu" or x.dtype != self.dtype:
            return None
        if x.dtype not in (torch.float32, torch.float64):
            return None
        try:
            fits = np.broadcast_shapes(x.shape[1:], self.param_shape) == x.shape[1:]
        except ValueError:
            return None  # step() reports the mismatch
        if not fits or load_kernel() is None:
            return None
        return kernel_form(self.model.step, self.params, self.conv)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the neuron's shape; no input (a 0-d zero) is zeros of that shape."""
        if x.dim() == 0:
            return torch.zeros((self.batch, *(self.in_shape or self.param_shape)), dtype=self.dtype, device=self.device)
        return _fit(x, self.in_shape)

    def _start(self, x: torch.Tensor) -> None:
        """Zero state in the shape of the input broadcast with the parameters."""
        try:
            shape = np.broadcast_shapes(x.shape, (self.batch, *self.param_shape))
        except ValueError:
            raise GraphError(
                f"receives {list(x.shape[1:])}, which does not fit parameters of shape {list(self.param_shape)}",
                node=self.name,
                field="input_type",
            ) from None
        self.state = initial_state(self.model, shape, dtype=self.dtype, device=self.device)

    def step(self, x):
        x = self._input(x)
        if self.state is None:
            self._start(x)
        out, self.state = self.model.step(x, self.state, self.params, self.conv)
        self.last = dict(self.state._asdict())
        if self.model.spiking:
            self.last["spikes"] = out
        return out


NODE_CLASSES = {"io": _Identity, "linear": _Linear, "neuron": _Neuron}


def _node_class(node) -> type[_Node]:
    if "delay" in getattr(PRIMITIVES.get(type(node).__name__), "fields", ()):
        return _Delay
    return NODE_CLASSES[kind_of(node)]


class FloatReference:
    """Float simulation of a NIR graph under a :class:`Convention` (see ``docs/backends.md``)."""

    name = "float"

    def __init__(self, graph, convention: Convention = Convention(), device="cpu", dtype=torch.float32):
        import nir

        self.graph = graph
        self.convention = convention
        self.device = torch.device(device)
        self.dtype = dtype
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("device 'cuda' requested but no CUDA GPU is visible")
        self.nodes, self.edges = flatten_graph(graph)
        self.inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
        output_nodes = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        self.order, self.back_edges = order_graph(self.nodes, self.edges, self.inputs)
        self.preds: dict[str, list[tuple[str, bool]]] = {n: [] for n in self.nodes}
        for src, dst in self.edges:
            self.preds[dst].append((src, (src, dst) in self.back_edges))
        self.ops: dict[str, _Node] = {}
        for name, node in self.nodes.items():
            self.ops[name] = _node_class(node)(name, node, convention, self.device, dtype)
        for name, op in self.ops.items():
            if isinstance(op, _Linear):
                op.binary_input = self._single_spikes_into(name)
        # What the outputs are: the node feeding each Output node (or the Output itself).
        self.outputs = []
        for out in output_nodes:
            feeders = [src for src, _ in self.preds[out]]
            self.outputs.append(feeders[0] if len(feeders) == 1 else out)

    def _single_spikes_into(self, name: str) -> bool:
        """Whether node ``name``'s only input is a spiking neuron's 0/1 spikes (one spike per step at most)."""
        feeders = [self.ops[src] for src, _ in self.preds[name]]
        spiking = len(feeders) == 1 and isinstance(feeders[0], _Neuron) and feeders[0].model.spiking
        return spiking and self.convention.spikes_per_step == "single"

    @property
    def recurrent_edges(self) -> list[tuple[str, str]]:
        return sorted(self.back_edges)

    def keys_of(self, name: str) -> list[str]:
        return [f"{name}.{var}" for var in self.ops[name].variables]

    def _default_keys(self) -> list[str]:
        keys = []
        for name in self.outputs:
            op = self.ops[name]
            var = "spikes" if "spikes" in op.variables else ("v" if "v" in op.variables else "out")
            keys.append(f"{name}.{var}")
        return keys

    def _record_keys(self, record) -> list[str]:
        if record is None:
            return self._default_keys()
        if record == "all":
            return [key for name in self.order for key in self.keys_of(name)]
        if isinstance(record, str):
            record = [record]
        keys = []
        for item in record:
            if item in self.ops:
                keys.extend(self.keys_of(item))
                continue
            node, _, var = item.rpartition(".")
            if node in self.ops and var in self.ops[node].variables:
                keys.append(item)
                continue
            raise NeurocompileError(
                f"cannot record '{item}': no such node or variable (nodes: {', '.join(self.order)})"
            )
        return keys

    def _prepare_inputs(self, inputs) -> dict[str, torch.Tensor]:
        """Inputs through the backends' shared check (graded values allowed: this is a float
        simulator); an input with the declared number of values per step takes the declared shape."""
        if not self.inputs:
            raise GraphError("graph has no Input node", node="<graph>", field="nodes")
        ports = [(name, self.ops[name].in_shape) for name in self.inputs]
        arrays, _, _ = check_inputs(ports, inputs, binary=False, backend="float")
        return {name: torch.as_tensor(x).to(device=self.device, dtype=self.dtype) for name, x in arrays.items()}

    def _zero(self) -> torch.Tensor:
        """No value: a 0-d zero (a node makes it zeros of its shape)."""
        return torch.zeros((), dtype=self.dtype, device=self.device)

    def _input_of(self, name: str, current: dict, prev: dict) -> torch.Tensor:
        """The sum of ``name``'s incoming edges (back-edges read ``prev``, the others ``current``)."""
        x = None
        for src, is_back in self.preds[name]:
            value = prev[src] if is_back else current[src]
            x = value if x is None else _sum(name, x, value)
        return self._zero() if x is None else x

    def _before_start(self, batch: int, steps: int) -> dict[str, torch.Tensor]:
        """Every node's output at t = -1, which back-edges deliver at step 0: inputs, states and earlier
        values are zero, so a neuron outputs zero and a stateless node its value on zeros (an Affine
        its bias). Leaves every node reset for a run of ``steps``."""
        zeros = dict.fromkeys(self.nodes, self._zero())
        values: dict[str, torch.Tensor] = {}
        for op in self.ops.values():
            op.reset(batch, 1)  # no state (a Delay's buffer) from an earlier run
        for name in self.order:
            op = self.ops[name]
            values[name] = zeros[name] if isinstance(op, _Neuron) else op.step(self._input_of(name, values, zeros))
        for op in self.ops.values():
            op.reset(batch, steps)
        return values

    def back_edge_start(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """What each back-edge source delivers at step 0: [batch, *shape], or a 0-d zero."""
        values = self._before_start(batch, 1)
        return {src: values[src] for src, _ in self.back_edges}

    @torch.no_grad()
    def run(self, inputs, record=None, progress: bool = False, checkpoint_every: int | None = None) -> Recording:
        """Simulate ``inputs`` [batch, time, *input_shape] (or a dict per Input node): layer by layer
        when the graph has no back-edge, else step by step. A NIR graph has no plastic synapse: no
        ``checkpoint_every``."""
        if checkpoint_every is not None:
            raise NeurocompileError(
                "float backend: a NIR graph does not learn; checkpoint_every needs a plastic program"
            )
        xs = self._prepare_inputs(inputs)
        batch, steps = next(iter(xs.values())).shape[:2]
        keys = self._record_keys(record)
        simulate = self._step_major if self.back_edges else self._layer_major
        arrays = simulate(xs, batch, steps, keys, progress)
        synops = {name: op.synops for name, op in self.ops.items() if isinstance(op, _Linear) and op.weighted}
        metadata = {
            "dt": self.convention.dt,
            "convention": self.convention.name,
            "steps": int(steps),
            "batch": int(batch),
            "synops": synops,
            "neuron_kernels": {name: op.engine for name, op in self.ops.items() if isinstance(op, _Neuron)},
            "recurrent_edges": [list(e) for e in self.recurrent_edges],
        }
        return Recording(arrays=arrays, outputs=list(self.outputs), backend="float", metadata=metadata)

    def _step_major(self, xs, batch: int, steps: int, keys, progress: bool) -> dict[str, np.ndarray]:
        """The nodes on a cycle, and those between two cycles, once per step, in order (back-edges read the
        previous step's values); the others over the whole run as :meth:`_layer_major` runs them, before the
        loop (what feeds the cycles) or after it (what only they feed)."""
        cycle = self._cycle_nodes()
        downstream = self._reachable(cycle)
        cycle |= downstream & self._reaching(cycle)  # a node between two cycles runs in the loop too
        after = downstream - cycle
        before = [name for name in self.order if name not in cycle and name not in after]
        prev = self._before_start(batch, steps)
        values, traces = self._whole_run(before, xs, batch, steps, keys, {})
        loop = [name for name in self.order if name in cycle]
        for op in (self.ops[name] for name in loop):
            if isinstance(op, _Neuron):
                op.engine = "torch"
        looped = {key: [] for key in keys if key.rpartition(".")[0] in cycle}
        outs: dict[str, list[torch.Tensor]] = {name: [] for name in loop}
        per_step = {
            name: value.reshape(batch, steps, *value.shape[1:]) for name, value in values.items() if value.dim()
        }
        for t in _progress(range(steps), progress, "step"):
            current = {name: per_step[name][:, t] if name in per_step else values[name] for name in values}
            for name in loop:
                op = self.ops[name]
                out = op.step(xs[name][:, t] if name in xs else self._input_of(name, current, prev))
                current[name] = out
                outs[name].append(out.expand(batch) if out.dim() == 0 else out)
                if op.variables == ("out",):
                    op.last = {"out": out}
            for key in looped:
                name, _, var = key.rpartition(".")
                value = self.ops[name].last[var]
                looped[key].append(value.expand(batch) if value.dim() == 0 else value)
            prev = current
        values.update({name: torch.stack(out, dim=1).flatten(0, 1) for name, out in outs.items()})
        _, later = self._whole_run([name for name in self.order if name in after], xs, batch, steps, keys, values)
        traces.update(later)
        arrays = {key: torch.stack(value, dim=1).cpu().numpy() for key, value in looped.items()}
        return arrays | {key: _batch_first(value, batch, steps) for key, value in traces.items()}

    def _whole_run(self, names, xs, batch: int, steps: int, keys, values: dict):
        """``names`` (in order) each over the whole run into ``values`` (sample-major [batch*steps, ...]; a
        0-d zero for no input); returns ``(values, {key: recorded value})`` for the keys of ``names``."""
        keep = _kept_variables(keys)
        traces = {}
        for name in names:
            x = _sample_major(xs[name]) if name in xs else self._input_of(name, values, {})
            values[name], recorded = self.ops[name].sequence(x, batch, steps, keep.get(name, ()))
            traces.update({f"{name}.{var}": value for var, value in recorded.items()})
        return values, traces

    def _cycle_nodes(self) -> set[str]:
        """The nodes on a cycle through a back-edge: the only ones that need the previous step's values."""
        on_cycle = set()
        for src, dst in self.back_edges:
            on_cycle |= self._reachable({dst}, forward_only=True) & self._reaching({src}) | {src, dst}
        return on_cycle

    def _reachable(self, start: set[str], forward_only: bool = False) -> set[str]:
        """Every node reachable from ``start`` along edges (``forward_only``: not along back-edges), ``start``
        included."""
        successors = {node: [] for node in self.nodes}
        for src, dst in self.edges:
            if not (forward_only and (src, dst) in self.back_edges):
                successors[src].append(dst)
        return _closure(start, successors)

    def _reaching(self, targets: set[str]) -> set[str]:
        """Every node from which one of ``targets`` is reachable along forward edges, ``targets`` included."""
        return _closure(targets, {node: [src for src, back in preds if not back] for node, preds in self.preds.items()})

    def _layer_major(self, xs, batch: int, steps: int, keys, progress: bool) -> dict[str, np.ndarray]:
        """Each node over the whole run, in topological order (without back-edges no node waits for a
        later one). Values are sample-major [batch*steps, ...]; one is dropped after its last reader."""
        keep = _kept_variables(keys)
        last_read = {src: i for i, name in enumerate(self.order) for src, _ in self.preds[name]}
        values: dict[str, torch.Tensor] = {}
        traces: dict[str, torch.Tensor] = {}
        for i, name in enumerate(_progress(self.order, progress, "node")):
            x = _sample_major(xs[name]) if name in xs else self._input_of(name, values, {})
            values[name], recorded = self.ops[name].sequence(x, batch, steps, keep.get(name, ()))
            traces.update({f"{name}.{var}": value for var, value in recorded.items()})
            for done in [src for src in values if last_read.get(src, i) <= i]:
                del values[done]
        return {key: _batch_first(traces[key], batch, steps) for key in keys}


def _closure(start, neighbours: dict) -> set[str]:
    """``start`` and every node reachable from it through ``neighbours`` ({node: [node, ...]})."""
    seen, pending = set(start), list(start)
    while pending:
        for nxt in neighbours[pending.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


def _kept_variables(keys) -> dict[str, list[str]]:
    """Recording keys ``node.var`` as {node: [var, ...]}."""
    keep: dict[str, list[str]] = {}
    for key in keys:
        name, _, var = key.rpartition(".")
        keep.setdefault(name, []).append(var)
    return keep


def _progress(items, progress: bool, unit: str):
    if not progress:
        return items

    return tqdm(items, desc="float", unit=unit, leave=False, disable=None)


def _batch_first(value: torch.Tensor, batch: int, steps: int) -> np.ndarray:
    """A sample-major [batch*steps, ...] value as NumPy [batch, steps, ...] (a 0-d value: zeros [batch, steps])."""
    if value.dim() == 0:
        return value.expand(batch, steps).cpu().numpy().copy()
    return value.reshape(batch, steps, *value.shape[1:]).cpu().numpy()


def _sum(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` into node ``name``: ``b`` takes ``a``'s layout when it holds as many values; else they
    must broadcast (a one-line GraphError names the node and both shapes)."""
    if a.dim() and b.dim() and a.shape != b.shape and a[0].numel() == b[0].numel():
        b = b.reshape(a.shape)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise GraphError(
            f"inputs of different sizes cannot be summed: {list(a.shape[1:])} and {list(b.shape[1:])}",
            node=name,
            field="edges",
        ) from None
    return a + b
