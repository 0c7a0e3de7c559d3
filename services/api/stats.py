"""`GET /v1/stats/timeline` and `GET /v1/entities`: SPEC section 6."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from services.api.access import runtime_of
from services.api.deps import ERRORS, TEXT, bearer
from shared.runtime import Runtime
from shared.stats import EntityCount, Interval, Split, Timeline, default_window, timeline, top_entities

router = APIRouter(tags=["stats"], responses=ERRORS, dependencies=[Depends(bearer)])
MAX_DAYS = {Interval.DAY: 3660, Interval.HOUR: 31}  # bounds a response's size


class EntityPage(BaseModel):
    items: list[EntityCount]


@router.get("/stats/timeline", response_model_by_alias=True)
def stats_timeline(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    date_from: Annotated[date | None, Query(alias="from", description="First day (default: 30 days to `to`)")
                         ] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last day, inclusive (default: today, UTC)")
                       ] = None,
    interval: Annotated[Interval, Query(description="day: by publication date; hour: by when stored, UTC")
                        ] = Interval.DAY,
    by: Annotated[Split | None, Query(description="Split each bucket by source, country or language")] = None,
) -> Timeline:
    """Article counts per day (or hour) over a window, optionally split by source, country or language."""
    start, end = default_window(date_from, date_to, datetime.now(UTC).date())
    if start > end:
        raise HTTPException(400, "from is after to")
    if (end - start).days >= MAX_DAYS[interval]:
        raise HTTPException(400, f"at most {MAX_DAYS[interval]} days with interval={interval.value}")
    with runtime.read_sessions() as session:
        items = timeline(session, start, end, interval, by)
    return Timeline(interval=interval, by=by, date_from=start, date_to=end, items=items)


@router.get("/entities")
def entities(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    date_from: Annotated[date | None, Query(alias="from", description="Articles published on or after")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Articles published on or before")] = None,
    type: Annotated[str | None, Query(max_length=16, pattern=TEXT, description=(
        "person, organization, place, nationality or event"))] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=TEXT, description="Name prefix, any case")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EntityPage:
    """The entities mentioned in the most articles published in the window (all time without one)."""
    with runtime.read_sessions() as session:
        items = top_entities(session, start=date_from, end=date_to, kind=type, prefix=q, limit=limit)
    return EntityPage(items=items)
