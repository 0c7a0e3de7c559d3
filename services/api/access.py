"""Who is asking (SPEC section 6, "Access"): a key in `Authorization: Bearer` for /v1, the same key kept in an
HttpOnly cookie for the /ops page. No key or a revoked one: 401; a reader key where an operator's is needed: 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from shared.keys import Caller, Role, caller_of
from shared.runtime import Runtime


async def runtime_of(request: Request) -> Runtime:
    """Async: no I/O, so no hop through the thread pool (a sync dependency costs one per request)."""
    return request.app.state.runtime


def key_owner(runtime: Runtime, key: str) -> Caller | None:
    with runtime.sessions() as session:
        return caller_of(session, key.strip())


def caller(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)]) -> Caller:
    """The key's owner: 401 without a valid key."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "send a key: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
    found = key_owner(runtime, key)
    if found is None:
        raise HTTPException(401, "unknown or revoked key", headers={"WWW-Authenticate": "Bearer"})
    return found


def operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """403 for a key without the operator role."""
    if not who.may(Role.OPERATOR):
        raise HTTPException(403, f"key {who.name!r} is a {who.role.value} key; this needs an operator key")
    return who
