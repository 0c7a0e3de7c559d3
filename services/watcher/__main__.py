"""The watcher service: notices complete files in the drop folders, records them, enqueues them.

Consumes files in NEWSFLOW_DROP_DIRS; produces drops in the ledger and messages on `newsflow.parse`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from pathlib import Path

from services.watcher.service import Watcher
from shared.health import readiness
from shared.heartbeats import Heart
from shared.observe import serve
from shared.runtime import service_runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow watcher", description=__doc__)
    parser.add_argument("--drop", action="append", type=Path, help="drop folder (repeatable; default setting)")
    args = parser.parse_args(argv)
    runtime = service_runtime("watcher")
    settings = runtime.settings
    stop = threading.Event()
    watcher = Watcher(runtime, args.drop or settings.drop_dirs)

    def on_signal(*_: object) -> None:
        stop.set()
        watcher.handler.wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    heart = Heart(settings.require_urls()[0], node=f"watcher-{os.getpid()}@{socket.gethostname()}",
                  service="watcher").start()
    serve(settings.metrics.port_of("watcher"), alive=lambda: not stop.is_set(), ready=lambda: readiness(runtime))
    try:
        watcher.run(stop)
    finally:
        heart.stop()


if __name__ == "__main__":
    main()
