"""`newsflow api` as a client sees it: open probes and metrics, keys and roles (401, 403), the operator's
status and replay (recorded with the key's name), readiness that follows the broker."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest
from sqlalchemy import delete, func, select, update

from shared.models import Article, Drop, Heartbeat, OperatorAction
from shared.records import DropStatus
from tests.support import ROOT, TestServers, new_key, newsflow, running_api, wait_for_drops

pytestmark = pytest.mark.integration

SEED = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
KEYS = {"stages", "workers", "totals", "rates", "lag_s", "replay_backlog", "sources"}




def test_keys_roles_status_replay_and_probes(pipeline: TestServers, clean_db: None, sessions) -> None:
    operator, reader = new_key(pipeline.env, "operator", "ops"), new_key(pipeline.env, "reader", "dashboards")
    with running_api(pipeline) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready", "problems": []}
        assert client.get("/v1/status").status_code == 401
        assert client.get("/v1/status", headers={"Authorization": "Bearer nf_wrong"}).status_code == 401
        assert client.get("/v1/status", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        found = client.get("/v1/status", headers={"Authorization": f"Bearer {operator}"})
        assert found.status_code == 200 and set(found.json()) == KEYS
        metrics = client.get("/metrics").text
        assert 'newsflow_unfinished{stage="parse"}' in metrics and 'newsflow_drops{status="stored"}' in metrics

        assert newsflow(pipeline.env, "ingest", str(SEED), "--wait", "--workers", "0").returncode == 0
        with sessions() as session, session.begin():  # as a storage bug, since fixed, would have left it
            session.execute(update(Drop).values(status=DropStatus.FAILED, reason="error", detail="a bug",
                                                article_id=None))
            session.execute(delete(Article))
        body = {"status": "failed"}
        assert client.post("/v1/replay", json=body, headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        replayed = client.post("/v1/replay", json=body, headers={"Authorization": f"Bearer {operator}"})
        assert replayed.status_code == 200, replayed.text
        assert len(replayed.json()["replayed"]) == 1
        [drop] = wait_for_drops(sessions, 1)
        assert drop.status is DropStatus.STORED
        with sessions() as session:
            actions = session.execute(select(OperatorAction.key_name, OperatorAction.action)).all()
        assert actions == [("ops", "replay")]

        assert newsflow(pipeline.env, "keys", "revoke", "ops").returncode == 0
        assert client.get("/v1/status", headers={"Authorization": f"Bearer {operator}"}).status_code == 401
        listed = newsflow(pipeline.env, "keys", "list").stdout
        assert "ops" in listed and "revoked" in listed and "dashboards" in listed
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(OperatorAction)).scalar_one() == 1


def test_readyz_fails_while_the_broker_is_unreachable(servers: TestServers, clean_db: None) -> None:
    with running_api(servers, env={"NEWSFLOW_BROKER_URL": "redis://127.0.0.1:1/0"}) as base:
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503
        assert any(p.startswith("broker:") for p in ready.json()["problems"])
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # alive all the same


def group_members(port: int) -> set[int]:
    """The pids of the api processes serving `port` as one of a `--workers N` group."""
    return {p.pid for p in psutil.process_iter(["cmdline"])
            if "--reuse-port" in (p.info["cmdline"] or []) and str(port) in (p.info["cmdline"] or [])}


def both_beating(base: str, sessions) -> set[int]:
    """Waits until the two processes of a `--workers 2` group serve `base` and each has its own heartbeat; their
    pids. Only the group's own rows count: a process killed earlier leaves its heartbeat behind."""
    port = int(base.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while True:
        members = group_members(port)
        with sessions() as session:
            beating = set(session.execute(select(Heartbeat.pid).where(Heartbeat.service == "api")).scalars())
        if len(members) == 2 and members <= beating:
            return members
        assert time.monotonic() < deadline, f"api processes: {members}, heartbeats: {beating}"
        time.sleep(0.2)


def test_an_api_process_that_dies_is_started_again(servers: TestServers, clean_db: None, sessions) -> None:
    with running_api(servers, env={"NEWSFLOW_API_WORKERS": "2"}) as base:
        killed = min(both_beating(base, sessions))
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 30
        port = int(base.rsplit(":", 1)[1])
        while len(now := group_members(port) - {killed}) < 2:  # the supervisor starts another after 1 s
            assert time.monotonic() < deadline, f"api processes after the kill: {now}"
            time.sleep(0.2)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    with sessions() as session, session.begin():  # the killed process's heartbeat would stay behind
        session.execute(delete(Heartbeat).where(Heartbeat.service == "api", Heartbeat.pid == killed))


def test_api_processes_share_one_port_and_a_revoked_key_stops_reading_within_the_cache_bound(
        servers: TestServers, clean_db: None, sessions) -> None:
    """`--workers 2` (here NEWSFLOW_API_WORKERS): two processes, each its own heartbeat, answer on one port; a
    revoked reader key reads on for at most NEWSFLOW_API_KEY_CACHE_S (each process trusts a key it checked that
    long), then gets 401 from every process."""
    reader = new_key(servers.env, "reader", "dashboards")
    headers = {"Authorization": f"Bearer {reader}"}
    env = {"NEWSFLOW_API_WORKERS": "2", "NEWSFLOW_API_KEY_CACHE_S": "1"}
    with running_api(servers, env=env) as base, httpx.Client(base_url=base, timeout=30) as client:
        both_beating(base, sessions)
        for _ in range(10):  # a connection each: either process may take it
            assert httpx.get(f"{base}/v1/articles", headers=headers, timeout=30).status_code == 200
        assert newsflow(servers.env, "keys", "revoke", "dashboards").returncode == 0
        revoked_at = time.monotonic()
        while client.get("/v1/articles", headers=headers).status_code != 401:
            assert time.monotonic() - revoked_at < 30, "a revoked key still reads"
            time.sleep(0.1)
        time.sleep(1.5)  # past the bound, no process may still trust it
        assert {httpx.get(f"{base}/v1/articles", headers=headers, timeout=30).status_code for _ in range(10)} == {401}
