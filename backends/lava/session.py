"""One Lava runtime: started, stepped in blocks and always shut down, leaving no process and no
shared-memory segment behind."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager

from neurocompile.errors import NeurocompileError

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # noted, and acted on later, while Lava starts or stops
TAP_DRAIN_TIMEOUT_S = 30.0  # how long to wait for recordings still in flight after a run


class Session:
    """One Lava runtime: start it, run blocks of steps, and always shut it down without orphans.

    Lava 0.10's multiprocessing runtime forks one OS process per process model plus a
    shared-memory server. Its failure modes handled here:

    * an exception inside a process model deadlocks Lava (its runtime service waits for the
      other models, which wait for the failed one's messages): runs are therefore started
      non-blocking and the backend polls both the runtime's reply channel and the children;
      a dead child raises a :class:`NeurocompileError` carrying its last traceback line;
    * signals: the children ignore SIGINT, so a terminal's Ctrl-C (sent to the whole process
      group) interrupts only this process. Lava cannot stop from every state a
      ``KeyboardInterrupt`` leaves it in: ``Runtime.stop`` of a runtime that never ran sends nothing
      and then waits for its children forever, and one interrupted in the middle of a message to
      its runtime service (a run, a ``Var.get``/``set``) waits for a reply that never comes. So
      after an error or an interrupt ``close`` kills the children instead of asking them.

    ``close`` asks Lava's runtime services to stop only when the session ends normally (bounded by
    ``STOP_TIMEOUT_S``, given up on a signal); then, in every case, it kills whatever still runs,
    the shared-memory server included, and unlinks the segments itself.
    """

    STOP_TIMEOUT_S = 20.0

    def __init__(self, anchor, run_cfg, taps=None):
        self.anchor = anchor
        self.run_cfg = run_cfg
        self.taps = taps or {}
        self.runtime = None
        self.failed = False

    def start(self) -> None:
        """Compile, then build the runtime (``Process.create_runtime``): Lava's shared-memory server,
        its channels and one forked process per model, which ignore SIGINT and take SIGTERM's and
        SIGHUP's default action.

        A signal meanwhile is held and acted on at Lava's next step (a fork, a shared-memory segment,
        or while the children build), where the runtime's bookkeeping is whole: acted on at once, it
        could land in an at-fork hook (``logging``'s), which swallows the ``KeyboardInterrupt``.
        The half-built runtime is torn down before the signal is acted on (after an error, ``close``
        tears it down).
        """
        from lava.magma.core.process.message_interface_enum import ActorType
        from lava.magma.runtime.runtime import Runtime

        _prepare_lava_forks()
        with warnings.catch_warnings():
            # Lava's model search executes every module beside processes.py as a top-level
            # script and warns about those that cannot run that way (they hold no models).
            warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
            executable = self.anchor.compile(self.run_cfg)
        global _forking_lava
        with _signals_held() as held:  # leaving the block acts on a held signal
            self.runtime = Runtime(executable, ActorType.MultiProcessing, loglevel=self.anchor._log_config.level)
            executable.assign_runtime_to_all_processes(self.runtime)
            _stop_at_signals(self.runtime, held)
            _forking_lava = True
            try:
                self.runtime.initialize()
            except _Held:  # nothing is left when the signal is acted on, even by its default action
                _tear_down(self.runtime)
                self.runtime = None
            finally:
                _forking_lava = False

    def _check_children(self) -> None:
        dead = [a for a in _actors_of(self.runtime) if not a.is_alive()]
        if not dead:
            return
        self.failed = True
        detail = "exited"
        for actor in dead:
            try:
                exc = actor.exception
            except (OSError, ValueError, EOFError):
                exc = None
            if exc:
                err, tb = exc
                detail = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                break
        raise NeurocompileError(f"lava backend: a Lava process failed during the run ({detail})")

    def run_steps(self, steps: int, stall_timeout_s: float = 120.0) -> dict:
        """Run ``steps`` steps; returns ``{tap key: [one array per step]}`` streamed by the taps.

        Watchdog: when neither a tap nor the runtime makes progress for ``stall_timeout_s``
        (a process waiting on a port nobody sends on), the run fails with a one-line error and
        :meth:`close` terminates every Lava process.
        """
        from lava.magma.core.run_conditions import RunSteps

        received = {key: [] for key in self.taps}
        pipes = {key: tap.out_port.external_pipe_csp_recv_port for key, tap in self.taps.items()}

        def drain():
            for key, pipe in pipes.items():
                while pipe.probe():
                    received[key].append(pipe.recv())

        self.anchor.run(condition=RunSteps(num_steps=steps, blocking=False))
        replies = list(self.runtime.service_to_runtime)
        delay = 1e-4
        seen, last_progress = 0, time.monotonic()
        while not all(port.probe() for port in replies):
            drain()
            self._check_children()
            count = sum(len(values) for values in received.values())
            if count != seen:
                seen, last_progress = count, time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                self.failed = True
                raise NeurocompileError(
                    f"lava backend: the run stalled (no progress for {stall_timeout_s:g} s); stopped every Lava process"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 5e-3)
        self.runtime.wait()  # reads the replies (raises on an error reply)
        # The taps' last messages can still be in their pipes when the runtime reports the steps
        # done (seen under heavy load): drain until every tap delivered all steps.
        deadline = time.monotonic() + TAP_DRAIN_TIMEOUT_S
        drain()
        while any(len(values) < steps for values in received.values()) and time.monotonic() < deadline:
            time.sleep(1e-3)
            drain()
        for key, values in received.items():
            if len(values) != steps:
                raise NeurocompileError(f"lava backend: recorder {key} delivered {len(values)} of {steps} steps")
        return received

    def close(self) -> None:
        """Stop the runtime and leave nothing of it: no process, no shared-memory segment. Never raises
        but for a signal that arrives meanwhile, which is acted on once everything is gone."""
        runtime, self.runtime = self.runtime, None
        if runtime is None:
            return
        # Called from a `finally`, sys.exc_info() holds the error or KeyboardInterrupt that ends the
        # session: Lava may then be mid-message (or never started), so it is not asked to stop.
        orderly = sys.exc_info()[0] is None and not self.failed
        done = False
        try:
            with _signals_held() as held:
                if orderly:
                    _ask_to_stop(runtime, held, self.STOP_TIMEOUT_S)
                _tear_down(runtime)
                done = True
        finally:
            if not done:  # a signal came before the handlers were in place
                _tear_down(runtime)


_AT_FORK = []
_forking_lava = False  # True while Session.start forks Lava's processes


def _prepare_lava_forks() -> None:
    """Register, once, what every process Lava forks does first: get SIGKILL when this process dies,
    however it dies (``prctl(PR_SET_PDEATHSIG)``, Linux), so that no worker outlives it, even one
    killed with SIGKILL; ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; this
    process acts on it); take SIGTERM's and SIGHUP's default action (not the command's handlers)
    unless this process ignores them."""

    if _AT_FORK:
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None

    def in_child() -> None:
        if not _forking_lava:
            return
        if prctl is not None:
            prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # as under nohup
                signal.signal(sig, signal.SIG_DFL)

    os.register_at_fork(after_in_child=in_child)
    _AT_FORK.append(in_child)


def _actors_of(runtime) -> list:
    infra = getattr(runtime, "_messaging_infrastructure", None)
    return list(getattr(infra, "actors", []) or [])


@contextmanager
def _signals_held():
    """Within the block, SIGINT, SIGTERM and SIGHUP are only noted (in the list it yields); when it
    ends, however it ends, the first one is acted on as the handler in place before would have (main
    thread only). An ignored signal stays ignored."""
    held = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def note(signum, frame):
        held.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in HELD if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            handler = previous[held[0]]
            if callable(handler):
                handler(held[0], None)  # the command's handler or Python's SIGINT one: raises KeyboardInterrupt
            else:  # the default action
                signal.raise_signal(held[0])


class _Held(BaseException):
    """Ends Lava's start-up at its next step after a signal (see ``Session.start``)."""


def _stop_at_signals(runtime, held: list) -> None:
    """Make ``runtime.initialize()`` raise :class:`_Held` at its first step after a signal is noted in
    ``held``: before each fork and each shared-memory segment, and while its children build."""

    def check() -> None:
        if held:
            raise _Held

    def checked(method):
        def call(*args, **kwargs):
            check()
            return method(*args, **kwargs)

        return call

    build_infrastructure, start_ports = runtime._build_message_infrastructure, runtime._start_ports

    def build_infrastructure_checked() -> None:
        check()
        build_infrastructure()
        infra = runtime._messaging_infrastructure
        infra.build_actor = checked(infra.build_actor)
        infra.smm.create_shared_memory = checked(infra.smm.create_shared_memory)

    def start_ports_then_wait() -> None:
        start_ports()
        for queue in runtime.exception_q:  # each child's build report, which initialize() then reads
            while queue.empty():
                check()
                time.sleep(0.005)

    runtime._build_message_infrastructure = build_infrastructure_checked
    runtime._start_ports = start_ports_then_wait


def _ask_to_stop(runtime, held: list, timeout_s: float) -> None:
    """Lava's ``Runtime.stop`` handshake, polled: STOP to every runtime service, their TERMINATED
    replies, then the children's exit. Gives up after ``timeout_s``, on a signal (``held``) or on any
    other reply; ``_tear_down`` then kills what is left."""
    from lava.magma.runtime.mgmt_token_enums import MGMT_COMMAND, MGMT_RESPONSE, enum_equal

    deadline = time.monotonic() + timeout_s
    actors = _actors_of(runtime)

    def waiting() -> bool:
        return not held and time.monotonic() < deadline

    if not all(actor.is_alive() for actor in actors):
        return
    for port in runtime.runtime_to_service:
        if not port.probe():  # full: its service is not reading
            return
        port.send(MGMT_COMMAND.STOP)
    for port in runtime.service_to_runtime:
        while not port.probe():
            if not waiting():
                return
            time.sleep(1e-3)
        if not enum_equal(port.recv(), MGMT_RESPONSE.TERMINATED):
            return
    for actor in actors:
        while actor.is_alive() and waiting():
            multiprocessing.Process.join(actor, 0.01)  # Lava's SystemProcess.join takes no timeout


def _tear_down(runtime) -> None:
    """Kill and reap whatever of Lava still runs (its children, its shared-memory server), close and
    unlink its channels' segments (else Python's resource tracker unlinks them at exit, with a warning
    after the command's one-line error), release what else ``Runtime.stop`` would (pipes, threads),
    and mark the runtime stopped (else its ``__del__`` messages dead children and waits forever).
    Idempotent; works on a runtime interrupted half-built."""
    smm = getattr(getattr(runtime, "_messaging_infrastructure", None), "_smm", None)
    manager = getattr(smm, "_manager", None)
    server = getattr(manager, "_process", None)
    actors = _actors_of(runtime)
    processes = [p for p in [*actors, server] if _running(p)]
    for process in processes:
        process.kill()
    for process in processes:
        multiprocessing.Process.join(process, 5.0)
    if manager is not None and hasattr(manager, "shutdown"):  # started: its finalizer, now only bookkeeping
        manager.shutdown()
    for actor in actors:  # what Lava's SystemProcess.join closes (it would also read a message a kill may have cut)
        actor._pconn.close()
        actor._cconn.close()
    for process in [*actors, server]:
        if process is not None and process._popen is not None and process._popen.poll() is not None:
            process.close()  # its sentinel pipes (one still running after SIGKILL keeps them)
    segments = getattr(smm, "_shared_memory_handles", [])
    for segment in segments:
        segment.close()
        try:
            segment.unlink()
        except FileNotFoundError:
            pass
    segments.clear()
    runtime.join()  # releases the threads of its ports
    runtime._is_started = runtime._is_running = False


def _running(process) -> bool:
    """Whether a (possibly never started, or already closed) multiprocessing process still runs."""
    try:
        return process is not None and process._popen is not None and process.is_alive()
    except ValueError:  # closed by Lava's own join: it has ended
        return False
