"""The HTTP API (FastAPI): probes and metrics open, every /v1 route behind a key (SPEC section 6).

Operator routes: `GET /v1/status` (the status object of SPEC section 7) and `POST /v1/replay`; every
operator action is recorded with its key's name (`operator_actions`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from services.api import articles, feed, stats
from services.api.metrics import ledger_metrics
from shared.db import transaction
from shared.health import readiness
from shared.keys import Caller, Role, caller_of
from shared.ledger import REPLAYABLE, dispatch, requeue_for_replay, select_replayable
from shared.models import OperatorAction
from shared.records import DropStatus
from shared.runtime import Runtime
from shared.status import current_status

probes = APIRouter(tags=["probes"])
v1 = APIRouter(prefix="/v1")


class ReplayRequest(BaseModel):
    ids: list[int] = Field(default=[], description="These drops (rejected or failed).")
    status: DropStatus | None = Field(default=None, description="Every drop in this state (rejected or failed).")
    reason: str | None = Field(default=None, description="Every rejected or failed drop with this reason code.")


class ReplayResult(BaseModel):
    replayed: list[int]
    not_replayed: dict[int, str] = Field(description="Drop id: why it cannot be replayed.")


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="newsflow", version="1", description="News drops in, clean, deduplicated articles out.")
    app.state.runtime = runtime
    app.include_router(probes)
    app.include_router(v1)
    for reads in (articles.router, feed.router, stats.router):  # issue 12: the consumers' read routes
        app.include_router(reads, prefix="/v1", dependencies=[Depends(caller)])
    return app


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


def caller(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)]) -> Caller:
    """The key's owner: 401 without a valid key."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "send a key: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
    with runtime.sessions() as session:
        found = caller_of(session, key.strip())
    if found is None:
        raise HTTPException(401, "unknown or revoked key", headers={"WWW-Authenticate": "Bearer"})
    return found


def operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """403 for a key without the operator role."""
    if not who.may(Role.OPERATOR):
        raise HTTPException(403, f"key {who.name!r} is a {who.role.value} key; this needs an operator key")
    return who


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
    if not (request.ids or request.status or request.reason):
        raise HTTPException(422, "say which drops: ids, status or reason")
    if request.status is not None and request.status not in REPLAYABLE:
        raise HTTPException(422, "only rejected or failed drops can be replayed")
    pipeline = runtime.settings.pipeline
    with transaction(runtime.sessions) as session:
        drops = select_replayable(session, statuses=[request.status] if request.status else REPLAYABLE,
                                  reason=request.reason, ids=request.ids)
        requeued, problems = requeue_for_replay(session, drops, max_bytes=pipeline.max_bytes)
        session.add(OperatorAction(key_name=who.name, action="replay", detail={
            "request": request.model_dump(mode="json"), "replayed": requeued,
            "not_replayed": {str(k): v for k, v in problems.items()}}))
    dispatch(runtime.celery, requeued, batch_size=pipeline.batch_size)
    return ReplayResult(replayed=requeued, not_replayed=problems)
