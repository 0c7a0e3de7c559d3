"""`newsflow enrich --backfill`: re-enrich articles of an older enrichment version, a window at a time.

Resumable by construction: progress is the articles' own `enrichment_version`, so a re-run after an
interruption picks up what is left (articles it sent are pending, and come back as lost messages if they
were).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from shared.enrichment import count_unenriched, reconcile_enrichment
from shared.errors import SystemFailure
from shared.runtime import Runtime
from shared.settings import ENRICHMENT_VERSION

POLL_INTERVAL_S = 0.2


def in_flight(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return count_unenriched(session)  # pending: sent, or waiting to be


def backfill(runtime: Runtime, *, window: int, progress: bool, dead_services: Callable[[], list[str]] = list) -> int:
    """Send outdated articles to the enrichers, at most `window` in flight; returns how many were due."""
    with runtime.sessions() as session:
        total = count_unenriched(session, version=ENRICHMENT_VERSION)
    left = total
    while left:
        if dead := dead_services():
            raise SystemFailure(f"local service stopped unexpectedly: {', '.join(dead)}")
        flying = in_flight(runtime)
        if flying < window // 2:
            reconcile_enrichment(runtime, version=ENRICHMENT_VERSION, limit=window - flying)
        time.sleep(POLL_INTERVAL_S)
        with runtime.sessions() as session:
            left = count_unenriched(session, version=ENRICHMENT_VERSION)
        if progress:
            print(f"\r  {total - left}/{total} articles enriched with version {ENRICHMENT_VERSION}", end="",
                  file=sys.stderr, flush=True)
    if progress and total:
        print(file=sys.stderr)
    return total
