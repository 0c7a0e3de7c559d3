"""`GET /v1/changes`: the change feed (SPEC section 6), with long poll. Why it never skips: shared/changes.py."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.api.access import runtime_of
from services.api.deps import ERRORS, bearer
from shared.changes import Change, CursorError, FeedCursor, FeedItem, read_changes
from shared.runtime import Runtime

router = APIRouter(tags=["feed"], responses=ERRORS, dependencies=[Depends(bearer)])
POLL_S = 0.1  # how often a long poll looks again (each look is one indexed query)


class ChangeItem(BaseModel):
    cursor: str = Field(description="This change's position: `after` it to resume just past it.")
    article_id: int
    change: Change
    at: datetime = Field(description="When the changing transaction began.")


class ChangePage(BaseModel):
    items: list[ChangeItem]
    next_cursor: str | None = Field(description="Pass as `after` for what follows (the same position when "
                                    "nothing followed yet). Cursors do not expire.")


def _read(runtime: Runtime, after: FeedCursor, limit: int) -> list[FeedItem]:
    with runtime.read_sessions() as session:
        return read_changes(session, after, limit)


@router.get("/changes")
async def changes(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    after: Annotated[str | None, Query(max_length=100, description="A `next_cursor` (or an item's `cursor`); "
                                       "none: from the first change")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=30, description="Seconds to wait for news when none is there yet "
                                 "(long poll)")] = 0,
) -> ChangePage:
    """Every committed change to an article (created, clustered, updated, enriched), in a fixed order, exactly
    once for a consumer that keeps following `next_cursor`, whatever the number of concurrent writers: no
    change ever appears behind a position already served."""
    try:
        cursor = FeedCursor.decode(after)
    except CursorError as e:
        raise HTTPException(400, str(e)) from e
    deadline = time.monotonic() + wait
    while not (items := await run_in_threadpool(_read, runtime, cursor, limit)):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(POLL_S, left))
    next_cursor = items[-1].cursor if items else (cursor.encode() if after else None)
    return ChangePage(items=[ChangeItem(cursor=i.cursor, article_id=i.article_id, change=Change(i.change), at=i.at)
                             for i in items], next_cursor=next_cursor)
