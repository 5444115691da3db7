"""One Lava runtime: started, stepped in blocks and always shut down, leaving no process and no
shared-memory segment behind."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
import warnings
from multiprocessing import shared_memory

from neurocompile.errors import NeurocompileError

DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # while Lava forks: handled once it has
TAP_DRAIN_TIMEOUT_S = 30.0  # how long to wait for recordings still in flight after a run


class Session:
    """One Lava runtime: start it, run blocks of steps, and always shut it down without orphans.

    Lava 0.10's multiprocessing runtime forks one OS process per process model plus a
    shared-memory manager. Two of its failure modes are handled here:

    * an exception inside a process model deadlocks Lava (its runtime service waits for the
      other models, which wait for the failed one's messages): runs are therefore started
      non-blocking and the backend polls both the runtime's reply channel and the children;
      a dead child raises a :class:`NeurocompileError` carrying its last traceback line;
    * Ctrl-C: the children are forked with SIGINT ignored, so a terminal's Ctrl-C (sent to the
      whole process group) interrupts only this process, which then stops the runtime.

    ``close`` first asks Lava to stop (bounded by ``STOP_TIMEOUT_S``); when that is impossible
    (a dead child, a run interrupted mid-message) it terminates the children and shuts down
    the shared-memory manager itself.
    """

    STOP_TIMEOUT_S = 20.0

    def __init__(self, anchor, run_cfg, taps=None):
        self.anchor = anchor
        self.run_cfg = run_cfg
        self.taps = taps or {}
        self.runtime = None
        self.failed = False

    def start(self) -> None:
        """Compile, then fork Lava's processes with SIGINT, SIGTERM and SIGHUP handlers that only take note.

        The children inherit the SIGINT one, so Ctrl-C never kills them (SIGTERM and SIGHUP they reset
        to the default at fork); a signal that reaches this process while it forks is handled once the
        runtime exists, so that it can be stopped and its shared memory unlinked.
        """

        _children_die_with_parent()
        with warnings.catch_warnings():
            # Lava's model search executes every module beside processes.py as a top-level
            # script and warns about those that cannot run that way (they hold no models).
            warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
            executable = self.anchor.compile(self.run_cfg)
        in_main = threading.current_thread() is threading.main_thread()
        interrupted = []
        previous = {}
        if in_main:
            previous = {sig: signal.signal(sig, lambda signum, frame: interrupted.append(signum)) for sig in DEFERRED}
        try:
            self.anchor.create_runtime(executable=executable)
        finally:
            self.runtime = getattr(self.anchor, "_runtime", None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if interrupted:  # now that the runtime exists, close() can stop it and unlink its segments
            handler = previous.get(interrupted[0])
            if callable(handler):
                handler(interrupted[0], None)  # the command's own handler (it raises KeyboardInterrupt)
            raise KeyboardInterrupt

    def _actors(self) -> list:
        infra = getattr(self.runtime, "_messaging_infrastructure", None)
        return list(getattr(infra, "actors", []) or [])

    def _check_children(self) -> None:
        dead = [a for a in self._actors() if not a.is_alive()]
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
        """Stop the runtime; never raises (the first error, if any, is already propagating)."""
        runtime = self.runtime
        if runtime is None:
            return

        actors = self._actors()
        segments = _shared_segments(runtime)
        self.runtime = None
        graceful = not self.failed and all(a.is_alive() for a in actors)
        if graceful:
            stopper = threading.Thread(target=_quiet_stop, args=(runtime,), daemon=True)
            stopper.start()
            stopper.join(self.STOP_TIMEOUT_S)
            graceful = not stopper.is_alive()
        if not graceful:
            _force_stop(runtime, actors)
        _unlink_leftovers(segments)


_AT_FORK = []


def _children_die_with_parent() -> None:
    """From now on, every process forked here (Lava's workers) gets SIGKILL when this process dies,
    however it dies (``prctl(PR_SET_PDEATHSIG)``, Linux), and SIGTERM's default action: no worker
    outlives the main process, even one killed with SIGKILL. Registered once."""

    if _AT_FORK:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return

    def in_child() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    os.register_at_fork(after_in_child=in_child)
    _AT_FORK.append(in_child)


def _quiet_stop(runtime) -> None:
    try:
        runtime.stop()
    except Exception:  # noqa: BLE001 - reported by the forced path's absence of leftovers
        pass


def _shared_segments(runtime) -> list[str]:
    """The names of the shared-memory segments of Lava's channels (made in this process, tracked by
    Lava's shared-memory manager, which unlinks them when it shuts down)."""
    smm = getattr(getattr(runtime, "_messaging_infrastructure", None), "_smm", None)
    return [handle.name for handle in getattr(smm, "_shared_memory_handles", [])]


def _unlink_leftovers(names: list[str]) -> None:
    """Unlink the segments the manager left (it is terminated when its shutdown takes over a second,
    as under load after an interrupted run): else Python's resource tracker unlinks them at exit and
    prints a warning after our one-line error."""

    for name in names:
        try:
            shared_memory.SharedMemory(name).unlink()
        except (FileNotFoundError, OSError, ValueError):
            pass  # already unlinked: the manager's shutdown completed


def _force_stop(runtime, actors) -> None:
    """Terminate Lava's children and its shared-memory manager (after a failure or a hang)."""
    for actor in actors:
        try:
            if actor.is_alive():
                actor.terminate()
        except (OSError, ValueError, AssertionError):
            pass
    for actor in actors:
        try:
            actor.join(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            if actor.is_alive():
                actor.kill()
                actor.join(timeout=5)
        except Exception:  # noqa: BLE001
            pass
    smm = getattr(getattr(runtime, "_messaging_infrastructure", None), "_smm", None)
    if smm is not None:
        try:
            smm.shutdown()
        except Exception:  # noqa: BLE001
            pass
