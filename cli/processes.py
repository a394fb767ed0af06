"""``p2p worker --processes N`` and ``p2p api --processes N``.

Each child is the one-process command itself (``python -m cli worker``, ``… api``),
started by a ``Supervisor``. What differs between children is set in their environment:

- worker ``i`` serves its metrics on ``P2P_WORKER_METRICS_PORT + i`` (0 stays off) and
  touches its own heartbeat ``P2P_HEARTBEAT_PATH.i``; the supervisor keeps
  ``P2P_HEARTBEAT_PATH`` itself as old as the stalest child's, so the one healthcheck
  fails when any child stops sweeping;
- the API's children share one listening socket, bound here before they start and
  inherited by file descriptor: the kernel hands each connection to whichever child
  accepts first, and connections waiting in the backlog outlive any one child.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from cli.supervisor import Supervisor
from shared.settings import Settings
from shared.store.opening import open_store

# As uvicorn's own: how many connections may wait for a child to accept them.
LISTEN_BACKLOG = 2048
_P2P = [sys.executable, "-m", "cli"]


def run_worker_processes(settings: Settings, processes: int) -> int:
    last_port = settings.worker_metrics_port + processes - 1
    if settings.worker_metrics_port and last_port > 65535:
        raise SystemExit(f"p2p worker: metrics ports up to {last_port}: past 65535")
    _migrate(settings)
    heartbeat = Path(settings.heartbeat_path) if settings.heartbeat_path else None

    def env_of(index: int) -> dict[str, str]:
        env = dict(os.environ)
        if settings.worker_metrics_port:
            env["P2P_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + index)
        if heartbeat is not None:
            env["P2P_HEARTBEAT_PATH"] = str(child_heartbeat(heartbeat, index))
        return env

    supervisor = Supervisor(
        "worker",
        processes,
        lambda _: [*_P2P, "worker"],
        env_of,
        on_tick=None if heartbeat is None else heartbeat_of_all(heartbeat, processes),
    )
    return supervisor.run()


def run_api_processes(settings: Settings, host: str, port: int, processes: int) -> int:
    _migrate(settings)
    with _listening_socket(host, port) as sock:
        fd = sock.fileno()
        supervisor = Supervisor(
            "api",
            processes,
            lambda _: [*_P2P, "api", "--host", host, "--port", str(port), "--fd", str(fd)],
            lambda _: dict(os.environ),
            pass_fds=[fd],
        )
        return supervisor.run()


def child_heartbeat(heartbeat: Path, index: int) -> Path:
    return heartbeat.with_name(f"{heartbeat.name}.{index}")


def heartbeat_of_all(heartbeat: Path, processes: int) -> Callable[[], None]:
    children = [child_heartbeat(heartbeat, index) for index in range(processes)]

    def touch_as_old_as_the_stalest_child() -> None:
        try:
            stalest = min(child.stat().st_mtime for child in children)
        except FileNotFoundError:  # a child has not swept yet
            return
        heartbeat.touch()
        os.utime(heartbeat, (stalest, stalest))

    return touch_as_old_as_the_stalest_child


def _migrate(settings: Settings) -> None:
    """Once, before the children start, so that they never race to upgrade the schema."""
    db = open_store(settings)
    db.migrate()
    db.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise SystemExit(f"p2p api: cannot listen on {host}:{port}: {error}") from None
    sock.set_inheritable(True)
    return sock
