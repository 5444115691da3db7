"""Lava processes that stream spikes and Vars to the host after every step (for ``backends.lava``).

Lava 0.10's ``Var.get()`` moves arrays one element per message (a FIXME in
``PyLoihiProcessModel._get_var``), about 20 us per value: reading a recorded layer through
``lava.proc.io.sink.Read`` costs seconds per sample. ``StateTap`` reads the Var through a RefPort
in the post-management phase (like ``Read``/``Monitor``) and sends the whole array through an
external pipe, the mechanism of ``lava.proc.io.extractor.Extractor``, so the host receives one
message per step.

Imported only after ``neurocompile.lava_compat.import_lava()``: this module needs Lava.
"""

import numpy as np
from lava.magma.core.decorator import implements, requires
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


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
