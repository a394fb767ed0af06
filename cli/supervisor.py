"""``--processes N``: one parent keeping N copies of a ``p2p`` command running.

The parent does no work of its own. It starts the children, restarts one that dies
without being asked to (after a back-off that grows while it keeps dying), and on
SIGTERM or SIGINT passes the signal on and waits for every child to finish what it has
in hand. Children get SIGTERM from the kernel if the parent itself is killed, so none
is left running unsupervised.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("p2p.supervisor")

# The first restart comes quickly; a child that keeps dying waits longer each time.
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 15.0
# A child that ran this long before dying was healthy: its next restart is quick again.
STABLE_AFTER_S = 30.0
_TICK_S = 0.2
_PR_SET_PDEATHSIG = 1

ArgvOf = Callable[[int], Sequence[str]]
EnvOf = Callable[[int], dict[str, str]]


@dataclass
class _Child:
    index: int
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = RESTART_BACKOFF_S
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``argv_of(i)`` with ``env_of(i)`` for each child ``i`` in ``range(processes)``."""

    def __init__(
        self,
        name: str,
        processes: int,
        argv_of: ArgvOf,
        env_of: EnvOf,
        *,
        pass_fds: Sequence[int] = (),
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._argv_of = argv_of
        self._env_of = env_of
        self._pass_fds = tuple(pass_fds)
        self._on_tick = on_tick
        self._children = [_Child(index) for index in range(processes)]
        self._stopping = threading.Event()

    def run(self) -> int:
        """Until SIGTERM or SIGINT; 0 when every child then exited 0, else 1."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stopping.set())
        for child in self._children:
            self._start(child)
        log.info("%s: %d processes started", self.name, len(self._children))
        while not self._stopping.wait(_TICK_S):
            now = time.monotonic()
            for child in self._children:
                self._look_after(child, now)
            if self._on_tick is not None:
                self._on_tick()
        return self._stop_all()

    def _start(self, child: _Child) -> None:
        child.popen = subprocess.Popen(  # noqa: S603 (our own p2p command, no shell)
            list(self._argv_of(child.index)),
            env=self._env_of(child.index),
            pass_fds=self._pass_fds,
            preexec_fn=_terminate_with_parent,
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info(
            "%s process %d started",
            self.name,
            child.index,
            extra={"child": child.index, "child_pid": child.popen.pid},
        )

    def _look_after(self, child: _Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._start(child)
            return
        assert child.popen is not None
        code = child.popen.poll()
        if code is None:
            return
        child.exit_codes.append(code)
        if now - child.started_at >= STABLE_AFTER_S:
            child.backoff_s = RESTART_BACKOFF_S
        log.warning(
            "%s process %d (pid %d) exited with %s unasked; restarting it in %.1f s",
            self.name,
            child.index,
            child.popen.pid,
            _describe(code),
            child.backoff_s,
            extra={"child": child.index, "child_pid": child.popen.pid, "exit_code": code},
        )
        child.restart_at = now + child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, RESTART_BACKOFF_MAX_S)

    def _stop_all(self) -> int:
        running = [c for c in self._children if c.popen is not None and c.restart_at is None]
        log.info("%s: stopping %d processes", self.name, len(running))
        for child in running:
            assert child.popen is not None
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        clean = True
        for child in running:
            assert child.popen is not None
            code = child.popen.wait()
            # A child still starting has no handler yet and dies of the signal itself:
            # it had nothing in hand, so that is a clean stop too.
            clean = clean and code in (0, -signal.SIGTERM)
            log.info(
                "%s process %d (pid %d) exited with %s",
                self.name,
                child.index,
                child.popen.pid,
                _describe(code),
                extra={"child": child.index, "child_pid": child.popen.pid, "exit_code": code},
            )
        return 0 if clean else 1


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, even by SIGKILL."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
