"""The HTTP API (FastAPI): probes and metrics open, every /v1 route behind a key (SPEC section 6).

Operator routes: `GET /v1/status` (the status object of SPEC section 7) and `POST /v1/replay`; every
operator action is recorded with its key's name (`operator_actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from services.api import articles, feed, ops, stats
from services.api.access import KeyCache, caller, operator, runtime_of
from services.api.metrics import ledger_metrics
from services.api.replay import ReplayRequest, ReplayResult, replay_drops
from shared.health import readiness
from shared.keys import Caller
from shared.runtime import Runtime
from shared.status import current_status

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
probes = APIRouter(tags=["probes"])
v1 = APIRouter(prefix="/v1")


def create_app(runtime: Runtime, lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(title="newsflow", version="1", description="News drops in, clean, deduplicated articles out.",
                  lifespan=lifespan)
    app.state.runtime = runtime
    app.state.keys = KeyCache(runtime.settings.api_key_cache_s)
    app.include_router(probes)
    app.include_router(v1)
    for reads in (articles.router, feed.router, stats.router):  # the consumers' read routes, for any key
        app.include_router(reads, prefix="/v1", dependencies=[Depends(caller)])
    app.include_router(ops.router)
    return app


@probes.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@probes.get("/readyz")
def readyz(runtime: Annotated[Runtime, Depends(runtime_of)]) -> JSONResponse:
    """Ready: the database and the broker answer and the schema is current (503 with the problems if not)."""
    problems = readiness(runtime)
    return JSONResponse({"status": "not ready" if problems else "ready", "problems": problems},
                        status_code=503 if problems else 200)


@probes.get("/metrics", response_class=PlainTextResponse)
def metrics(runtime: Annotated[Runtime, Depends(runtime_of)]) -> PlainTextResponse:
    """The ledger view in Prometheus' text format (SPEC section 7)."""
    body, content_type = ledger_metrics(current_status(runtime))
    return PlainTextResponse(body, media_type=content_type)


@v1.get("/status", tags=["operators"])
def status(runtime: Annotated[Runtime, Depends(runtime_of)], _: Annotated[Caller, Depends(operator)]
           ) -> dict[str, Any]:
    """The status object of SPEC section 7 (what `newsflow status --json` prints)."""
    return current_status(runtime)


@v1.post("/replay", tags=["operators"])
def replay(request: ReplayRequest, runtime: Annotated[Runtime, Depends(runtime_of)],
           who: Annotated[Caller, Depends(operator)]) -> ReplayResult:
    """Run rejected or failed drops through the pipeline again (by ids, state or reason), recorded with the
    key's name."""
    return replay_drops(runtime, who, request)
