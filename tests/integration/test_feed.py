"""The change feed never skips or repeats (SPEC section 6, `/v1/changes`), followed through the api process as a
consumer would: a change committed late (by a transaction older than one already committed) is served once,
not skipped; several storage processes writing at random while a consumer polls: every change exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from services.storage.enrichments import store_enrichments
from shared.celery_app import create_celery
from shared.clusters import rebuild
from shared.db import transaction
from shared.keys import Role, create_key
from shared.queues import TaskName
from tests.corpora import enrichment, outcome, random_spec, register_drops, store_and_enrich
from tests.integration.test_api import running_api
from tests.support import ServiceProcess, TestServers, truncate_all, wait_for_drops

pytestmark = pytest.mark.integration


class Follower:
    """A consumer of the feed: follows next_cursor, keeps every item it was served, in order."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cursor: str | None = None
        self.items: list[dict] = []

    def poll(self, *, limit: int = 100, wait: float = 0) -> list[dict]:
        params: dict[str, str | int | float] = {"limit": limit, "wait": wait}
        if self.cursor:
            params["after"] = self.cursor
        answer = self.client.get("/v1/changes", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        self.items += page["items"]
        if page["items"]:
            assert page["next_cursor"] == page["items"][-1]["cursor"]
        self.cursor = page["next_cursor"] or self.cursor
        return page["items"]

    def drain(self, sessions, timeout_s: float = 60) -> None:
        """Follow until every change committed so far was served. The feed serves a change once every older
        transaction on the server has ended, and the suite shares its server (other databases' transactions
        count too), so an empty page may only mean "not yet"."""
        with sessions() as session:
            committed = session.execute(text("SELECT count(*) FROM article_changes")).scalar_one()
        deadline = time.monotonic() + timeout_s
        while len(self.items) < committed:
            assert time.monotonic() < deadline, f"served {len(self.items)} of {committed} changes"
            self.poll(limit=1000, wait=1)

    def seen(self) -> list[tuple[int, str]]:
        return [(i["article_id"], i["change"]) for i in self.items]


@pytest.fixture
def follower(servers: TestServers, sessions) -> Iterator[Follower]:
    truncate_all(sessions)
    with transaction(sessions) as session:
        key = create_key(session, "feed-tests", Role.READER)
    with running_api(servers) as base, httpx.Client(base_url=base, timeout=60,
                                                     headers={"Authorization": f"Bearer {key}"}) as client:
        yield Follower(client)


def all_changes(sessions) -> list[tuple[int, str]]:
    with sessions() as session:
        return [tuple(r) for r in session.execute(text(
            "SELECT article_id, change FROM article_changes ORDER BY xid, position"))]


def test_a_change_committed_late_is_served_once_not_skipped(follower: Follower, sessions) -> None:
    rng = random.Random(1)
    first, second = random_spec(rng, [None]), random_spec(rng, [None])
    [a] = store_and_enrich(sessions, [first], "first")
    follower.drain(sessions)
    assert follower.seen() == [(a, "created")] + ([(a, "enriched")] if first.enriched else [])

    # An older storage transaction writes a change (a's enrichment again) and stays open...
    with sessions() as old:
        old.begin()
        store_enrichments(old, [enrichment(a, first)])
        # ...while a younger one stores another article and commits.
        [b] = store_and_enrich(sessions, [second], "second")
        with sessions() as session:  # what "poll where position > last" would serve: b's, past a's pending one
            committed = session.execute(text("SELECT max(position) FROM article_changes")).scalar_one()
            pending = old.execute(text("SELECT position FROM article_changes WHERE xid = pg_current_xact_id()")
                                  ).scalar_one()
        assert pending < committed
        started = time.monotonic()
        assert follower.poll(wait=0.5) == []  # held back below the open transaction: nothing passes it
        assert time.monotonic() - started >= 0.5  # the long poll waited
        old.commit()
    follower.drain(sessions)
    assert follower.seen() == all_changes(sessions)
    assert (a, "enriched") in follower.seen()[-3:] and (b, "created") in follower.seen()[-3:]
    assert len(follower.seen()) == len(set(map(str, follower.items)))  # nothing twice


def test_long_poll_answers_as_soon_as_a_change_commits(follower: Follower, sessions) -> None:
    follower.drain(sessions)
    timer = threading.Timer(0.5, store_and_enrich, (sessions, [random_spec(random.Random(2), [None])], "later"))
    timer.start()
    started = time.monotonic()
    items = follower.poll(wait=20)
    elapsed = time.monotonic() - started
    timer.join()
    assert items and items[0]["change"] == "created"
    assert 0.4 < elapsed < 5


def test_every_change_once_with_several_storage_processes(follower: Follower, servers: TestServers,
                                                          sessions) -> None:
    rng = random.Random(12)
    specs = [random_spec(rng, [None], words=160) for _ in range(240)]
    # Near-duplicates (one word changed) and exact copies under another title: clustered and updated changes.
    specs += [s.__class__(s.title + " (copy)", s.body.replace(".", " again.", 1), s.published_on, s.source)
              for s in specs[:30]]
    specs += [s.__class__("Another title", s.body, s.published_on, s.source) for s in specs[30:60]]
    rng.shuffle(specs)
    with transaction(sessions) as session:
        drop_ids = register_drops(session, specs, "feed")
    outcomes = [outcome(d, s).model_dump(mode="json") for d, s in zip(drop_ids, specs, strict=True)]
    storages = [ServiceProcess("storage", servers, "-n", f"storage-feed{i}@%h") for i in range(3)]
    app = create_celery(servers.env["NEWSFLOW_BROKER_URL"])
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            follower.poll(limit=rng.randint(1, 50), wait=0.2)

    consumer = threading.Thread(target=consume)
    try:
        for storage in storages:
            storage.start()
        for storage in storages:
            storage.wait_for_log(" ready")
        consumer.start()
        while outcomes:
            count = rng.randint(1, 20)
            app.send_task(TaskName.STORE, kwargs={"outcomes": outcomes[:count]})
            outcomes = outcomes[count:]
        wait_for_drops(sessions, len(specs))
        with sessions() as session:
            stored = dict(session.execute(text("SELECT id, article_id FROM drops WHERE status = 'stored'")).all())
        enrichments = [enrichment(stored[d], s).model_dump(mode="json") for d, s in zip(drop_ids, specs, strict=True)
                       if d in stored]
        rng.shuffle(enrichments)
        while enrichments:
            count = rng.randint(1, 20)
            app.send_task(TaskName.STORE_ENRICHMENTS, kwargs={"enrichments": enrichments[:count]})
            enrichments = enrichments[count:]
        deadline = time.monotonic() + 120
        while sum(c == "enriched" for _, c in all_changes(sessions)) < len(stored):
            assert time.monotonic() < deadline, "the enrichments were not all stored"
            time.sleep(0.2)
    finally:
        stop.set()
        if consumer.is_alive():
            consumer.join()
        for storage in storages:
            storage.stop()
        app.close()
    follower.drain(sessions)
    changes = all_changes(sessions)
    kinds = {c for _, c in changes}
    assert {"created", "enriched", "clustered"} <= kinds, kinds
    assert follower.seen() == changes  # every change, exactly once, in the feed's order
    cursors = [i["cursor"] for i in follower.items]
    assert len(cursors) == len(set(cursors))


def test_a_cluster_rebuild_records_what_changed(follower: Follower, sessions) -> None:
    """`newsflow clusters rebuild` recomputes every cluster: the feed gets `clustered` for the articles whose
    cluster changed, and nothing for the others."""
    rng = random.Random(5)
    spec = random_spec(rng, [None], words=160)
    near = spec.__class__("Near copy", spec.body.replace(".", " again.", 1), None, None)
    a, b, _ = store_and_enrich(sessions, [spec, near, random_spec(rng, [None], words=160)], "rebuild")
    follower.drain(sessions)
    assert (a, "clustered") in follower.seen() or (b, "clustered") in follower.seen()  # linked when stored
    with sessions() as session:
        [member] = session.execute(text("SELECT id FROM articles WHERE id = ANY(:ids) AND NOT is_canonical"),
                                   {"ids": [a, b]}).scalars().all()
    before = len(follower.items)
    with transaction(sessions) as session:
        rebuild(session, 0.999)  # too strict for the pair: the member becomes a story of its own
    follower.drain(sessions)
    assert follower.seen()[before:] == [(member, "clustered")]  # the canonical and the other are unchanged
    again = len(follower.items)
    with transaction(sessions) as session:
        rebuild(session, 0.999)  # nothing changes
    follower.drain(sessions)
    assert follower.seen()[again:] == []
