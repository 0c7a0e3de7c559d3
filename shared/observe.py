"""What every service process exports about its own work (SPEC section 7): Prometheus counters and
histograms, and an HTTP endpoint on its metrics port with /metrics, /healthz and /readyz.

Celery's prefork pool runs tasks in child processes: each records into files of its own under a folder made
for the service (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR, set before the pool
forks), and /metrics, served by the main process, adds up every child's files, those of children since
replaced included, so nothing counted is lost when a child dies (there are no gauges, whose values would go
with their process). Labels stay bounded: a stage and an outcome.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import values as prometheus_values

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_dir(service: str) -> None:
    """Before the pool forks and before any value is recorded: a folder of this service's own, and values
    kept in files there (the metrics below have labels, so they create their values at first use)."""
    if MULTIPROC_ENV not in os.environ:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix=f"newsflow-{service}-metrics-")
    prometheus_values.ValueClass = prometheus_values.get_value_class()


PROCESSED = Counter("newsflow_processed_total", "Items a stage finished, by outcome", ("stage", "outcome"))
TASK_SECONDS = Histogram("newsflow_task_duration_seconds", "Time a task took", ("stage",),
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
BATCH_SIZE = Histogram("newsflow_batch_size", "Items per message", ("stage",),
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
END_TO_END = Histogram("newsflow_end_to_end_seconds", "From discovery to stored, and to enriched", ("stage",),
                       buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400))


def registry() -> CollectorRegistry:
    """Every process's figures: the children's files in multiprocess mode, else this process's own."""
    if MULTIPROC_ENV in os.environ:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    from prometheus_client import REGISTRY
    return REGISTRY


def serve(port: int, *, alive: Callable[[], bool], ready: Callable[[], list[str]]) -> int | None:
    """Serve /metrics, /healthz (alive(): 200, else 503) and /readyz (ready(): the problems; 200 when none) on
    `port` (0: a free one) from a daemon thread; returns the port (None when it is taken: the service runs on,
    unobserved, and says so)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self.reply(200, generate_latest(registry()), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = alive()
                self.reply(200 if ok else 503, b"ok\n" if ok else b"consumer not running\n")
            elif self.path == "/readyz":
                problems = ready()
                self.reply(503 if problems else 200, ("\n".join(problems) or "ready").encode() + b"\n")
            else:
                self.reply(404, b"not found\n")

        def reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: not logged
            pass

    try:
        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    except OSError as e:
        log.warning("metrics port %d unavailable (%s): set NEWSFLOW_METRICS__PORT (0 picks a free one)", port, e)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics, health and readiness on port %d", server.server_address[1],
             extra={"metrics_port": server.server_address[1]})
    return int(server.server_address[1])
