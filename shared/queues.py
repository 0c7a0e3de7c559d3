"""Queue and task names: services send work by name and never import each other's code."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    PARSE = "newsflow.parse"
    STORE = "newsflow.store"


class TaskName(StrEnum):
    PARSE = "newsflow.parse_drops"
    STORE = "newsflow.store_outcomes"


ROUTES = {TaskName.PARSE: Queue.PARSE, TaskName.STORE: Queue.STORE}
