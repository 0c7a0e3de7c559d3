"""Run newsflow services as child processes: `up` and `ingest` on one machine, and `api --workers N`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERVICE_MODULES = {
    "watcher": "services.watcher",
    "worker": "services.worker",
    "enricher": "services.enricher",
    "storage": "services.storage",
    "api": "services.api",
}
STOP_TIMEOUT_S = 30.0
SUPERVISE_POLL_S = 0.5
RESTART_BACKOFF_S = 1.0  # the first restart of a child that exited; doubled each time it exits again soon...
MAX_RESTART_BACKOFF_S = 60.0
STABLE_S = 60.0  # ...unless it had run this long: then it starts over at RESTART_BACKOFF_S


def service_argv(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", SERVICE_MODULES[name], *args]


def exec_service(name: str, args: tuple[str, ...]) -> None:
    """Replace this process with the service (what a container's command does)."""
    argv = service_argv(name, *args)
    os.execv(argv[0], argv)


def child_env(database_url: str, broker_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The children get the servers' URLs in their environment, never on their command line."""
    return {**os.environ, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": broker_url, **(extra or {})}


@dataclass
class Restarts:
    """A child's command and its restart state."""

    argv: list[str]
    started_at: float
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Start children, notice when one dies (and, with `keep_alive`, restart it with backoff), stop them all
    with SIGTERM (a warm shutdown)."""

    def __init__(self, env: dict[str, str], *, quiet: bool = False) -> None:
        self.env = env
        # Celery prints its banner and "Warm shutdown" lines to stdout, whatever the log level: a command
        # that shows only warnings (ingest, replay) drops them; the services' logs go to stderr either way.
        self.stdout = subprocess.DEVNULL if quiet else sys.stderr
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, Restarts] = {}

    def start(self, label: str, service: str, *args: str) -> None:
        self._spawn(label, service_argv(service, *args))

    def _spawn(self, label: str, argv: list[str]) -> None:
        # Children write to our stderr: stdout carries only this command's own output (e.g. --json).
        self.children[label] = subprocess.Popen(argv, env=self.env, stdout=self.stdout)
        state = self.restarts.setdefault(label, Restarts(argv, time.monotonic()))
        state.started_at, state.restart_at = time.monotonic(), None
        log.info("started %s", label, extra={"pid": self.children[label].pid})

    def dead(self) -> list[str]:
        return [label for label, proc in self.children.items() if proc.poll() is not None]

    def keep_alive(self) -> None:
        """Restart children that exited: after RESTART_BACKOFF_S, doubled for a child that keeps exiting soon
        after its start (up to MAX_RESTART_BACKOFF_S), each with a log line. Call it in the main loop."""
        now = time.monotonic()
        for label in self.dead():
            state = self.restarts[label]
            if state.restart_at is None:
                state.failures = 1 if now - state.started_at >= STABLE_S else state.failures + 1
                delay = min(MAX_RESTART_BACKOFF_S, RESTART_BACKOFF_S * 2 ** (state.failures - 1))
                state.restart_at = now + delay
                log.warning("%s exited with status %s; restarting it in %.0f s (exit %d in a row)", label,
                            self.children[label].returncode, delay, state.failures)
            elif now >= state.restart_at:
                self._spawn(label, state.argv)
                log.warning("%s restarted", label, extra={"pid": self.children[label].pid})

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for label, proc in self.children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", label)
                proc.kill()
                proc.wait()
        self.children.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_on_signals() -> list[int]:
    """A list that becomes non-empty on SIGINT or SIGTERM, so the main loop can stop cleanly."""
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    return received


def supervise(supervisor: Supervisor, stop: list[int]) -> None:
    """Keep the children alive until a signal arrives (stop_on_signals); the caller's `with` then stops them."""
    while not stop:
        supervisor.keep_alive()
        time.sleep(SUPERVISE_POLL_S)
