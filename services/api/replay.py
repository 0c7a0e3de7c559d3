"""Replay as an operator action (SPEC section 6): rejected or failed drops back through the pipeline, the action
recorded with the key's name. One function for `POST /v1/replay` and the /ops page's replay buttons."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from services.api.deps import MAX_ID, TEXT
from shared.db import transaction
from shared.keys import Caller
from shared.ledger import REPLAYABLE, dispatch, requeue_for_replay, select_replayable
from shared.models import OperatorAction
from shared.records import DropStatus
from shared.runtime import Runtime

DropId = Annotated[int, Field(ge=1, le=MAX_ID)]  # a bigint: a larger id cannot exist


class ReplayRequest(BaseModel):
    ids: list[DropId] = Field(default=[], description="These drops (rejected or failed).")
    status: DropStatus | None = Field(default=None, description="Every drop in this state (rejected or failed).")
    reason: str | None = Field(default=None, pattern=TEXT, max_length=32,
                               description="Every rejected or failed drop with this reason code.")

    @model_validator(mode="after")
    def names_replayable_drops(self) -> ReplayRequest:
        """A request names drops, and only states that can be replayed (a 422 like any invalid body)."""
        if not (self.ids or self.status or self.reason):
            raise ValueError("say which drops: ids, status or reason")
        if self.status is not None and self.status not in REPLAYABLE:
            raise ValueError("only rejected or failed drops can be replayed")
        return self


class ReplayResult(BaseModel):
    replayed: list[int]
    not_replayed: dict[int, str] = Field(description="Drop id: why it cannot be replayed.")


def replay_drops(runtime: Runtime, who: Caller, request: ReplayRequest) -> ReplayResult:
    """Requeue the drops the request names, record the action, then send them."""
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
