"""Queue and task names: services send work by name and never import each other's code."""

from __future__ import annotations

from enum import StrEnum

from shared.records import Stage


class Queue(StrEnum):
    PARSE = "newsflow.parse"
    ENRICH = "newsflow.enrich"
    STORE = "newsflow.store"


class TaskName(StrEnum):
    PARSE = "newsflow.parse_drops"
    ENRICH = "newsflow.enrich_articles"
    STORE = "newsflow.store_outcomes"
    STORE_ENRICHMENTS = "newsflow.store_enrichments"


ROUTES = {
    TaskName.PARSE: Queue.PARSE,
    TaskName.ENRICH: Queue.ENRICH,
    TaskName.STORE: Queue.STORE,
    TaskName.STORE_ENRICHMENTS: Queue.STORE,
}

STAGE_QUEUES = {Stage.PARSE: Queue.PARSE, Stage.STORE: Queue.STORE, Stage.ENRICH: Queue.ENRICH}
