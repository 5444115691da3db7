"""The custom Lava processes of the Lava backend: recorders and LIF variants.

``StateTap`` and ``SpikeTap`` stream a Var or the spikes to the host once per step (Lava's ``Var.get`` moves one
element per message); ``LIFExtended`` is ``LIFReset`` with reset by subtraction and a bias onset;
``LearningNeuron`` drives three-factor learning. Imported only after
``neurocompile.backends.lava.compat.import_lava()``: this module needs Lava. See ``docs/lava-backend.md``.
"""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics import learning_engine as engine


class StateTap(AbstractProcess):
    """Sends the value of ``var`` after every time step to ``out_port``'s external pipe."""

    def __init__(self, var, buffer_size: int = 64, **kwargs) -> None:
        super().__init__(shape=var.shape, **kwargs)
        self.ref = RefPort(var.shape)
        self.ref.connect_var(var)
        self.out_port = OutPort(shape=var.shape)
        self.out_port.flag_external_pipe(buffer_size=buffer_size)


@implements(proc=StateTap, protocol=LoihiProtocol)
@requires(CPU)
class PyStateTapModel(PyLoihiProcessModel):
    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, float)
    out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        self.out_port.csp_ports[-1].send(np.asarray(self.ref.read(), dtype=float))


class SpikeTap(AbstractProcess):
    """Sends the spikes arriving at ``in_port`` every time step to ``out_port``'s external pipe.

    Lava's ``Extractor`` does the same but has two process models (sync and async), which a
    ``select_tag`` run configuration refuses; this one has a single untagged model.
    """

    def __init__(self, shape, buffer_size: int = 64, **kwargs) -> None:
        super().__init__(shape=shape, **kwargs)
        self.in_port = InPort(shape=shape)
        self.out_port = OutPort(shape=shape)
        self.out_port.flag_external_pipe(buffer_size=buffer_size)


@implements(proc=SpikeTap, protocol=LoihiProtocol)
@requires(CPU)
class PySpikeTapModel(PyLoihiProcessModel):
    in_port: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        self.out_port.csp_ports[-1].send(self.in_port.recv())


def _declare_lif(process: AbstractProcess, shape, du, dv, vth, bias_mant, bias_exp) -> None:
    """The ports and Vars of Lava's ``LIF`` (``a_in``, ``s_out``, ``u``, ``v``, decays, threshold, bias),
    which the process models of Lava's LIF read."""
    process.a_in = InPort(shape=shape)
    process.s_out = OutPort(shape=shape)
    process.u = Var(shape=shape, init=0)
    process.v = Var(shape=shape, init=0)
    process.du = Var(shape=(1,), init=du)
    process.dv = Var(shape=(1,), init=dv)
    process.vth = Var(shape=(1,), init=vth)
    process.bias_mant = Var(shape=shape, init=bias_mant)
    process.bias_exp = Var(shape=shape, init=bias_exp)


class LearningNeuron(AbstractProcess):
    """A LIF population that drives three-factor learning (``plasticity.LearningSignal``).

    Lava's own LIF integration (``AbstractPyLifModelFixed/Float.subthr_dynamics``), then, every
    step, the learning signal of ``neurocompile.semantics.learning_engine.learning_signal`` (fixed_pt) or
    ``float_learning_signal`` (floating_pt): spikes on ``s_out``, the bAP on ``s_out_bap``,
    y1-y3 on ``s_out_y1``-``s_out_y3`` and the error on ``error_out``. It sends on every port at
    every step: a LearningDense connected to a port that stays silent waits forever.
    ``a_third_factor_in`` takes the target (a RingBuffer) or the feedback synapses' sum.
    ``reset_interval`` > 0 zeroes u and v when ``time_step % reset_interval == 0`` (as ``LIFReset``);
    the bias is added from step ``bias_onset`` of the stream on (``fixedpoint.bias_active``).
    """

    def __init__(
        self, *, shape, du, dv, vth, bias_mant, bias_exp, signal, reset_interval=0, bias_onset=0, **kwargs
    ) -> None:
        super().__init__(shape=shape, signal=signal, reset_interval=reset_interval, bias_onset=bias_onset, **kwargs)
        n = (shape[0],)
        _declare_lif(self, shape, du, dv, vth, bias_mant, bias_exp)
        self.a_third_factor_in = InPort(shape=n)
        self.s_out_bap = OutPort(shape=n)
        self.s_out_y1 = OutPort(shape=n)
        self.s_out_y2 = OutPort(shape=n)
        self.s_out_y3 = OutPort(shape=n)
        self.error_out = OutPort(shape=n)
        self.psi_trace = Var(shape=shape, init=0)


class _LearningNeuronPorts:
    """Run-phase logic shared by both models: integrate, fire, compute and send the signal."""

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        third = self.a_third_factor_in.recv()
        interval = self.proc_params["reset_interval"]
        if interval > 0 and self.time_step % interval == 0:
            self.u[:] = 0
            self.v[:] = 0
        self.integrate(a_in, fxp.bias_active(self.time_step - 1, self.proc_params["bias_onset"]))
        v_pre = self.v.copy()
        spikes = self.v > self.threshold()
        self.v[spikes] = 0
        y, error, trace = self.signal_values(v_pre, spikes, third)
        self.psi_trace[:] = trace
        signal = self.proc_params["signal"]
        self.s_out.send(spikes)
        self.s_out_bap.send(spikes if signal.bap else np.zeros_like(spikes))
        self.s_out_y1.send(y[0])
        self.s_out_y2.send(y[1])
        self.s_out_y3.send(y[2])
        self.error_out.send(error)


class _FixedIntegrate:
    """Threshold and integration of the fixed_pt models: Lava's ``scale_bias`` and ``subthr_dynamics``, the
    bias left out before its onset."""

    def threshold(self):
        return np.int32(np.int64(self.vth[0]) << self.vth_shift)

    def clip_limit(self):
        return self.max_uv_val - 1

    def integrate(self, a_in, bias_on: bool, offset=0) -> None:
        """``subthr_dynamics`` with ``offset`` (int32, wrapping) added to the bias of this step."""
        self.scale_bias()
        if not bias_on:
            self.effective_bias = np.zeros_like(self.effective_bias)
        self.effective_bias = (self.effective_bias + offset).astype(np.int32)
        self.subthr_dynamics(activation_in=a_in)


class _FloatIntegrate:
    """Threshold and integration of the floating_pt models: Lava's ``subthr_dynamics`` (which reads
    ``bias_mant``), the bias left out before its onset."""

    def threshold(self):
        return self.vth[0]

    def clip_limit(self):
        return np.inf

    def integrate(self, a_in, bias_on: bool, offset=0) -> None:
        """``subthr_dynamics`` with ``offset`` added to the bias of this step."""
        bias, self.bias_mant = self.bias_mant, (self.bias_mant if bias_on else np.zeros_like(self.bias_mant)) + offset
        try:
            self.subthr_dynamics(activation_in=a_in)
        finally:
            self.bias_mant = bias


@implements(proc=LearningNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLearningNeuronFixed(_LearningNeuronPorts, _FixedIntegrate, AbstractPyLifModelFixed):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    s_out_bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)
    s_out_y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    s_out_y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    s_out_y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=7)
    error_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    psi_trace: np.ndarray = LavaPyType(np.ndarray, np.int64)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)

    def signal_values(self, v_pre, spikes, third):
        return engine.learning_signal(
            self.proc_params["signal"], v_pre, spikes, third, self.psi_trace, int(self.vth[0])
        )


@implements(proc=LearningNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLearningNeuronFloat(_LearningNeuronPorts, _FloatIntegrate, AbstractPyLifModelFloat):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_bap: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool)
    s_out_y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    error_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    psi_trace: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)

    def signal_values(self, v_pre, spikes, third):
        signal = self.proc_params["signal"]
        return engine.float_learning_signal(signal, v_pre, spikes, third, self.psi_trace, self.vth[0])


class LIFExtended(AbstractProcess):
    """Lava's ``LIFReset`` with neurocompile's extensions of the integer LIF (``Population``).

    * ``reset="subtract"``: a spiking neuron's ``v`` loses the threshold (``v[s] -= vth << 6``,
      floating_pt ``v[s] -= vth``) instead of becoming 0 (``fixedpoint.lif_fixed_step``);
    * ``reset_timing``: snnTorch's delayed or immediate reset (``fixedpoint.timed_fire``; ``synaptic``
      zeroes the stepped membrane);
    * ``payload_bits``: graded spikes carrying the count of thresholds crossed (``fixedpoint.fire``);
    * ``bias_onset``: the bias is added only from that step of each sample on
      (``fixedpoint.bias_active``; the step in the sample is ``(time_step - 1) % sample_steps``).

    The models subclass Lava's ``AbstractPyLifModelFixed``/``Float`` and run ``LIFReset``'s step
    (zero u and v when ``time_step % reset_interval == reset_offset``, ``scale_bias``,
    ``subthr_dynamics``, ``v > vth``) with these changes. On Loihi 2 this needs a custom neuron
    microcode, not the stock LIF.
    """

    def __init__(
        self,
        *,
        shape,
        du,
        dv,
        vth,
        bias_mant,
        bias_exp,
        reset: str = "zero",
        reset_timing: str = "same-step",
        synaptic: bool = False,
        payload_bits: int = 0,
        bias_onset: int = 0,
        sample_steps: int = 1,
        reset_interval: int = 1,
        reset_offset: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(
            shape=shape,
            reset=reset,
            reset_timing=reset_timing,
            synaptic=synaptic,
            payload_bits=payload_bits,
            bias_onset=bias_onset,
            sample_steps=sample_steps,
            reset_interval=reset_interval,
            reset_offset=reset_offset,
            **kwargs,
        )
        _declare_lif(self, shape, du, dv, vth, bias_mant, bias_exp)


class _ExtendedStep:
    """``PyLifResetModelBitAcc.run_spk``/``PyLifResetModelFloat.run_spk`` with the reset mode and timing and the
    bias onset."""

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        params = self.proc_params
        interval = params["reset_interval"]
        if interval > 0 and self.time_step % interval == params["reset_offset"] % interval:
            self.u *= 0
            self.v *= 0
        bias_on = fxp.bias_active((self.time_step - 1) % params["sample_steps"], params["bias_onset"])
        if params["payload_bits"]:
            self.integrate(a_in, bias_on)
            spikes = self.graded_fire()
        elif params["reset_timing"] == "same-step":
            self.integrate(a_in, bias_on)
            spikes = self.v > self.threshold()
            if params["reset"] == "subtract":
                self.v[spikes] -= self.threshold()
            else:
                self.v[spikes] = 0
        else:
            spikes = self.snntorch_step(a_in, bias_on)
        self.s_out.send(spikes)

    def graded_fire(self):
        """Graded spikes: the count of thresholds ``v`` exceeds, at most ``2**payload_bits - 1``; a subtractive
        reset removes that many thresholds, the other sets ``v`` to 0 where the count is positive."""
        th, most = self.threshold(), 2 ** self.proc_params["payload_bits"] - 1
        above = self.v > th
        count = np.minimum(-(-self.v // th) - 1, most) if th > 0 else np.full(self.v.shape, most)
        count = np.where(above, count, 0).astype(self.v.dtype)
        if self.proc_params["reset"] == "subtract":
            self.v[:] = self.v - count * th
        else:
            self.v[above] = 0
        return count

    def snntorch_step(self, a_in, bias_on: bool):
        """snnTorch's timings: ``r`` from the stored membrane, its reset in this step, then the spikes."""
        params, th = self.proc_params, self.threshold()
        r = self.v > th
        subtract = params["reset"] == "subtract"
        if not subtract and not params["synaptic"]:
            self.v[r] = 0
        self.integrate(a_in, bias_on, -th * r if subtract else 0)
        if not subtract and params["synaptic"]:
            self.v[r] = 0
        spikes = self.v > th
        if params["reset_timing"] == "snntorch-immediate":
            change = spikes.astype(np.int64) - r
            v = self.v - (th * change if subtract else change * self.v)
            self.v[:] = np.clip(v, -self.clip_limit(), self.clip_limit())
        return spikes


@implements(proc=LIFExtended, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLifExtendedModelFixed(_ExtendedStep, _FixedIntegrate, AbstractPyLifModelFixed):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)


@implements(proc=LIFExtended, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifExtendedModelFloat(_ExtendedStep, _FloatIntegrate, AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
