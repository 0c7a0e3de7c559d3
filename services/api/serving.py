"""How api processes serve: the app of one process (its runtime, threads and heartbeat), and N processes on one
port, each with a listening socket of its own (SO_REUSEPORT), so the kernel spreads the connections over them.

uvicorn's own `--workers` shares one listening socket among its processes: whichever wakes first accepts, and
clients that keep their connections open (every HTTP client library, and the benchmark's 20 clients) ended up
nearly all on one process, one core busy and the other idle (bench_api: 2 processes served no more than 1).
With a socket per process, Linux hashes each new connection to one of them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from shared.heartbeats import Heart
from shared.processes import Supervisor, stop_on_signals, supervise
from shared.runtime import Runtime, service_runtime

log = logging.getLogger(__name__)


def api_runtime() -> Runtime:
    """An api process's runtime: sync routes run in `api_threads` threads, each holding a pooled connection while it
    runs, so as many connections as threads: no request waits for one, and none is opened and closed per request
    (with SQLAlchemy's default pool, 5 plus 10 opened and closed as needed, PostgreSQL forked a backend every few
    requests under 20 concurrent clients)."""
    return service_runtime("api", pool_size=lambda settings: settings.api_threads)


def serving_app(runtime: Runtime | None = None) -> FastAPI:
    """The app as one api process serves it: its own runtime (engine, key cache) and its own heartbeat, node
    `api-PID@HOST`, so N processes on one port are N consumers of the status view, each with its own row."""
    runtime = runtime or api_runtime()

    @asynccontextmanager
    async def beating(_: FastAPI) -> AsyncIterator[None]:
        # Threads, not the default 40: the routes are mostly Python, so threads beyond the few that overlap
        # PostgreSQL's time only queue for the interpreter lock, and every hand-over of it costs. bench_api, list
        # route, 2 processes on 2 cores: 10 threads each 583-705 requests/s, p99 120-190 ms; 2 threads 923-937/s,
        # p99 38-45 ms (4: 671-731/s; 1: 682/s).
        anyio.to_thread.current_default_thread_limiter().total_tokens = runtime.settings.api_threads
        heart = Heart(runtime.settings.require_urls()[0], node=f"api-{os.getpid()}@{socket.gethostname()}",
                      service="api").start()
        try:
            yield
        finally:
            heart.stop()

    return create_app(runtime, lifespan=beating)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port in the port's SO_REUSEPORT group (every api process has one).

    Made with its protocol named (IPPROTO_TCP), as getaddrinfo gives it: asyncio sets TCP_NODELAY only on
    connections whose socket says TCP, and without it every response waited for the client's delayed ACK
    (48 ms a request with one client, whatever the route)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def server(app: FastAPI, **where: Any) -> uvicorn.Server:
    """uvicorn as every api process runs it (`where`: host and port, or none with a socket given to run()):
    httptools' HTTP parser and uvloop's event loop, uvicorn[standard]'s choices, named so that a missing one fails
    at start rather than falling back (with uvicorn's pure-Python h11 and asyncio's loop, a list page cost a sixth
    more of the api's CPU: bench_api, 1.67 against 1.40 ms a request); no access log (the routes log)."""
    return uvicorn.Server(uvicorn.Config(app, http="httptools", loop="uvloop", log_config=None, access_log=False,
                                         **where))


def serve_one(host: str, port: int) -> None:
    """One api process of a group on one port: its own socket, its own app (runtime, key cache, heartbeat)."""
    sock = listening_socket(host, port)
    server(serving_app()).run(sockets=[sock])


def run_processes(host: str, port: int, count: int) -> None:
    """`count` api processes on one port, each `newsflow api --reuse-port` (serve_one), kept alive by the
    supervisor `newsflow up` uses (restarted with backoff when one exits) until SIGTERM or SIGINT."""
    listening_socket(host, port).close()  # a port taken by another program fails here, once, with its error
    stop = stop_on_signals()
    with Supervisor(dict(os.environ)) as supervisor:
        for n in range(1, count + 1):
            supervisor.start(f"api process {n}", "api", "--host", host, "--port", str(port), "--reuse-port")
        log.info("api: %d processes on %s:%d", count, host, port)
        supervise(supervisor, stop)
