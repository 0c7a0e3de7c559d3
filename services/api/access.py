"""Who is asking (SPEC section 6, "Access"): a key in `Authorization: Bearer` for /v1, the same key kept in an
HttpOnly cookie for the /ops page. No key or a revoked one: 401; a reader key where an operator's is needed: 403.

Reads trust a key they checked for `api_key_cache_s` seconds (KeyCache): looking it up in PostgreSQL was a
session and a query on every request, as much work as a small listing. So a revoked key may still read for at
most that long; an operator action (status, replay) checks the database every time, so a revoked operator key
can do nothing once the revocation committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from shared.keys import Caller, Role, caller_of, key_hash
from shared.runtime import Runtime

MAX_CACHED_KEYS = 10_000  # only valid keys are kept, so this bounds nothing real; it bounds memory all the same


class KeyCache:
    """Valid keys recently checked, by hash, each trusted until its deadline (monotonic seconds). Unknown keys are
    never cached: a key just created works at once, and a flood of wrong keys keeps nothing in memory."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._now = clock
        self._found: dict[str, tuple[Caller, float]] = {}

    def get(self, key: str) -> Caller | None:
        hit = self._found.get(key_hash(key))
        if hit is None or hit[1] <= self._now():
            return None
        return hit[0]

    def put(self, key: str, who: Caller) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._found) >= MAX_CACHED_KEYS:
            self._found.clear()
        self._found[key_hash(key)] = (who, self._now() + self.ttl_s)


async def runtime_of(request: Request) -> Runtime:
    """Async: no I/O, so no hop through the thread pool (a sync dependency costs one per request)."""
    return request.app.state.runtime


def key_owner(runtime: Runtime, key: str) -> Caller | None:
    """The key's owner as the database says now (no cache)."""
    with runtime.read_sessions() as session:
        return caller_of(session, key.strip())


async def trusted_owner(request: Request, key: str) -> Caller | None:
    """The key's owner, from this process's KeyCache when checked within `api_key_cache_s`, else the database."""
    cache: KeyCache = request.app.state.keys
    key = key.strip()
    found = cache.get(key)
    if found is None:
        found = await run_in_threadpool(key_owner, request.app.state.runtime, key)
        if found is not None:
            cache.put(key, found)
    return found


def bearer_key(request: Request) -> str:
    """The key in `Authorization: Bearer`: 401 without one."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "send a key: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
    return key


def unknown_key() -> HTTPException:
    return HTTPException(401, "unknown or revoked key", headers={"WWW-Authenticate": "Bearer"})


async def caller(request: Request) -> Caller:
    """The key's owner, for reads: 401 without a valid key. Async, and a cached key costs no I/O at all."""
    found = await trusted_owner(request, bearer_key(request))
    if found is None:
        raise unknown_key()
    return found


async def operator(request: Request, runtime: Annotated[Runtime, Depends(runtime_of)]) -> Caller:
    """An operator key, checked in the database now (never the cache): 401 without a valid key, 403 for a key
    without the operator role."""
    found = await run_in_threadpool(key_owner, runtime, bearer_key(request))
    if found is None:
        raise unknown_key()
    if not found.may(Role.OPERATOR):
        raise HTTPException(403, f"key {found.name!r} is a {found.role.value} key; this needs an operator key")
    return found
