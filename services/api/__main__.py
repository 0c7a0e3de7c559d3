"""The api service: the HTTP API (probes, metrics, operator routes; SPEC sections 6 and 7).

`newsflow api [--host H] [--port P] [--workers N]`: needs NEWSFLOW_DATABASE_URL and NEWSFLOW_BROKER_URL.
"""

from __future__ import annotations

import argparse

from services.api.serving import api_runtime, run_processes, serve_one, server, serving_app
from shared.settings import API_PORT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=API_PORT, help=f"port (default {API_PORT})")
    parser.add_argument("--workers", type=int, help="processes serving the port (default NEWSFLOW_API_WORKERS, 1)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one of --workers N
    args = parser.parse_args(argv)
    if args.reuse_port:
        serve_one(args.host, args.port)
        return
    runtime = api_runtime()
    workers = args.workers or runtime.settings.api_workers
    if workers < 1:
        parser.error("--workers must be at least 1")
    if workers == 1:
        server(serving_app(runtime), host=args.host, port=args.port).run()
    else:  # each process is `newsflow api --reuse-port`, its own app on a socket of its own (services/api/serving.py)
        run_processes(args.host, args.port, workers)


if __name__ == "__main__":
    main()
