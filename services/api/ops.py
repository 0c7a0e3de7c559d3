"""The ops page (SPEC section 7): `/ops`, server-rendered, for an operator to keep open.

Sign-in takes a key through a form and keeps it in an HttpOnly, SameSite=Strict cookie scoped to /ops; any valid
key sees the page, only an operator key gets the replay buttons (and `POST /ops/replay` answers 403 to others).
Posts from another site are refused (the cookie is SameSite=Strict, and an Origin that is not this host's is a
403 too). The page reloads itself every REFRESH_S seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from services.api.access import key_owner, runtime_of
from services.api.charts import sparkline
from services.api.history import failures, last_hour
from services.api.replay import ReplayRequest, replay_drops
from shared.keys import Caller, Role
from shared.records import DropStatus
from shared.runtime import Runtime
from shared.status import current_status

COOKIE = "newsflow_ops_key"
COOKIE_MAX_AGE_S = 12 * 3600
REFRESH_S = 15

router = APIRouter(prefix="/ops", include_in_schema=False)
templates = Jinja2Templates(env=Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(default=True)))
templates.env.globals["sparkline"] = sparkline


def signed_in(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)]) -> Caller | None:
    key = request.cookies.get(COOKIE)
    return key_owner(runtime, key) if key else None


def sign_in_page(request: Request, error: str | None = None, status_code: int = 401) -> HTMLResponse:
    return templates.TemplateResponse(request, "sign_in.html", {"error": error}, status_code=status_code)


def same_origin(request: Request) -> bool:
    """A form posted from this page, not from another site (browsers send Origin with every POST)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


@router.get("", response_class=HTMLResponse)
def page(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)],
         who: Annotated[Caller | None, Depends(signed_in)], replayed: int | None = None,
         not_replayed: int = 0) -> HTMLResponse:
    """The page, or the sign-in form without a valid key."""
    if who is None:
        return sign_in_page(request)
    status = current_status(runtime)
    with runtime.sessions() as session:
        hour, failed = last_hour(session), failures(session)
    context: dict[str, Any] = {
        "who": who, "may_replay": who.may(Role.OPERATOR), "status": status, "hour": hour, "failures": failed,
        "silent": [s for s in status["sources"] if s["silent"]], "refresh_s": REFRESH_S,
        "replayed": replayed, "not_replayed": not_replayed}
    return templates.TemplateResponse(request, "ops.html", context)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)],
            key: Annotated[str, Form()]) -> Response:
    if not same_origin(request):
        return sign_in_page(request, "sign in from this page", status_code=403)
    if key_owner(runtime, key) is None:
        return sign_in_page(request, "unknown or revoked key")
    response = RedirectResponse("/ops", status_code=303)
    response.set_cookie(COOKIE, key.strip(), max_age=COOKIE_MAX_AGE_S, path="/ops", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
def sign_out() -> Response:
    response = RedirectResponse("/ops", status_code=303)
    response.delete_cookie(COOKIE, path="/ops")
    return response


@router.post("/replay", response_class=HTMLResponse)
def replay(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)],
           who: Annotated[Caller | None, Depends(signed_in)], status: Annotated[DropStatus | None, Form()] = None,
           reason: Annotated[str | None, Form()] = None, drop_id: Annotated[int | None, Form()] = None) -> Response:
    """A replay button: every drop of one (status, reason), or one drop."""
    if who is None:
        return sign_in_page(request)
    if not same_origin(request) or not who.may(Role.OPERATOR):
        return templates.TemplateResponse(request, "refused.html", {"who": who}, status_code=403)
    try:
        wanted = ReplayRequest(ids=[drop_id] if drop_id else [], status=status, reason=reason)
    except ValidationError as e:
        return templates.TemplateResponse(request, "refused.html", {"who": who, "problem": e.errors()[0]["msg"]},
                                          status_code=422)
    result = replay_drops(runtime, who, wanted)
    return RedirectResponse(f"/ops?replayed={len(result.replayed)}&not_replayed={len(result.not_replayed)}",
                            status_code=303)
