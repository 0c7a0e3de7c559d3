"""Run newsflow services as child processes (for `up` and `ingest` on one machine)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

SERVICE_MODULES = {
    "watcher": "services.watcher",
    "worker": "services.worker",
    "enricher": "services.enricher",
    "storage": "services.storage",
}
STOP_TIMEOUT_S = 30.0


def service_argv(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", SERVICE_MODULES[name], *args]


def exec_service(name: str, args: tuple[str, ...]) -> None:
    """Replace this process with the service (what a container's command does)."""
    argv = service_argv(name, *args)
    os.execv(argv[0], argv)


def child_env(database_url: str, broker_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The children get the servers' URLs in their environment, never on their command line."""
    return {**os.environ, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": broker_url, **(extra or {})}


class Supervisor:
    """Start children, notice when one dies, stop them all with SIGTERM (a warm shutdown)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, label: str, service: str, *args: str) -> None:
        # Children write to our stderr: stdout carries only this command's own output (e.g. --json).
        self.children[label] = subprocess.Popen(service_argv(service, *args), env=self.env, stdout=sys.stderr)
        log.info("started %s", label, extra={"pid": self.children[label].pid})

    def dead(self) -> list[str]:
        return [label for label, proc in self.children.items() if proc.poll() is not None]

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
