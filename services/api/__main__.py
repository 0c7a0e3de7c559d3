"""The api service: the HTTP API (probes, metrics, operator routes; SPEC sections 6 and 7).

`newsflow api [--host H] [--port P]`: needs NEWSFLOW_DATABASE_URL and NEWSFLOW_BROKER_URL.
"""

from __future__ import annotations

import argparse
import os
import socket

import uvicorn

from services.api.app import create_app
from shared.heartbeats import Heart
from shared.runtime import service_runtime
from shared.settings import API_PORT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=API_PORT, help=f"port (default {API_PORT})")
    args = parser.parse_args(argv)
    runtime = service_runtime("api")
    heart = Heart(runtime.settings.require_urls()[0], node=f"api-{os.getpid()}@{socket.gethostname()}",
                  service="api").start()
    try:
        uvicorn.run(create_app(runtime), host=args.host, port=args.port, log_config=None, access_log=False)
    finally:
        heart.stop()


if __name__ == "__main__":
    main()
