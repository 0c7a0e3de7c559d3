"""The api service: the HTTP API (probes, metrics, operator routes; SPEC sections 6 and 7).

`newsflow api [--host H] [--port P] [--workers N]`: needs NEWSFLOW_DATABASE_URL and NEWSFLOW_BROKER_URL.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from shared.heartbeats import Heart
from shared.runtime import Runtime, service_runtime
from shared.settings import API_PORT

FACTORY = "services.api.__main__:serving_app"  # what each of N uvicorn worker processes imports and calls
# Sync routes run in threads; each holds a pooled connection while it runs. As many connections as threads, so
# no request waits for one and none is opened and closed per request: with SQLAlchemy's default pool (5, plus
# 10 opened and closed as needed) under 20 concurrent clients, PostgreSQL forked a backend every few requests.
# More threads than this would only queue for the same core (the routes are CPU-bound on this side).
THREADS = 10


def serving_app(runtime: Runtime | None = None) -> FastAPI:
    """The app as one api process serves it: its own runtime (engine, key cache) and its own heartbeat, node
    `api-PID@HOST`, so N processes on one port are N consumers of the status view, each with its own row."""
    runtime = runtime or service_runtime("api", pool_size=THREADS)

    @asynccontextmanager
    async def beating(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        heart = Heart(runtime.settings.require_urls()[0], node=f"api-{os.getpid()}@{socket.gethostname()}",
                      service="api").start()
        try:
            yield
        finally:
            heart.stop()

    return create_app(runtime, lifespan=beating)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=API_PORT, help=f"port (default {API_PORT})")
    parser.add_argument("--workers", type=int, help="processes serving the port (default NEWSFLOW_API_WORKERS, 1)")
    args = parser.parse_args(argv)
    runtime = service_runtime("api", pool_size=THREADS)
    workers = args.workers or runtime.settings.api_workers
    if workers < 1:
        parser.error("--workers must be at least 1")
    options = {"host": args.host, "port": args.port, "log_config": None, "access_log": False}
    if workers == 1:
        uvicorn.run(serving_app(runtime), **options)
    else:  # uvicorn starts the processes (and replaces one that dies); each builds its app with serving_app()
        uvicorn.run(FACTORY, factory=True, workers=workers, **options)


if __name__ == "__main__":
    main()
