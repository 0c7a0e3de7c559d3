"""The consumers' read API (SPEC section 6) as a client sees it: search, filters, pages, records with ETags,
stories, stats, and a key on every /v1 route."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import httpx
import psycopg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import transaction
from shared.keys import Role, create_key
from shared.listing import ArticleQuery, list_articles
from shared.migrate import alembic_config
from shared.stats import top_entities
from tests.conftest import ADMIN_URL
from tests.corpora import Spec, enrich, store, store_and_enrich
from tests.integration.test_api import running_api
from tests.support import ROOT, TestServers, scratch_database, truncate_all

pytestmark = pytest.mark.integration

D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
STORM = ("A violent storm hit the coast of Brittany overnight, cutting power to thousands of homes and "
         "closing the harbour while fishermen waited for the wind to drop before they could go back out to sea. "
         "Emergency services said more than forty trees had fallen across roads in the region and that two "
         "people had been taken to hospital with minor injuries after their car was struck by a branch. "
         "Forecasters expect calmer weather by the weekend, although heavy rain is likely to continue in the "
         "north where rivers are already close to bursting their banks after a very wet month.")
SPECS = [
    Spec("Storm hits the coast", STORM, D1, "Reuters", "en", ("FR",), ("storm",), (("place", "Paris"),)),
    # A near-duplicate of the first (one word changed): one story, two articles.
    Spec("Storm batters the coast", STORM.replace("overnight", "last night"), D2, "BBC News", "en", ("FR",),
         ("storm",)),
    Spec("Central bank raises rates", "The central bank raised interest rates by half a point on Tuesday, its "
         "fourth rise this year, saying inflation remained too high.", D2, "Bloomberg News", "en", ("US",),
         ("rates", "bank"), (("organization", "Federal Reserve"),)),
    Spec("Rescue at sea", "Lifeboat crews rescued twelve fishermen from a sinking trawler in the storm.", D3,
         "Reuters", "en", ("GB",), ("rescue",)),
    Spec("La grève des enseignants", "Les enseignants sont en grève dans toute la France contre la réforme.",
         D3, "Associated Press", "fr", ("FR",), ("grève",)),
    Spec("Undated piece on shipping", "Shipping companies said freight prices rose sharply this quarter.", None,
         None, "en"),
]


@pytest.fixture(scope="module")
def corpus(sessions) -> list[int]:
    truncate_all(sessions)
    return store_and_enrich(sessions, SPECS, "consumers")


@pytest.fixture(scope="module")
def client(servers: TestServers, sessions, corpus: list[int]) -> Iterator[httpx.Client]:
    with transaction(sessions) as session:
        key = create_key(session, "consumer-tests", Role.READER)
    with running_api(servers) as base, httpx.Client(base_url=base, timeout=30,
                                                     headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def query(params: dict[str, object]) -> dict[str, str | int]:
    return {k: v if isinstance(v, int) else str(v) for k, v in params.items()}


def ids(client: httpx.Client, **params: object) -> list[int]:
    answer = client.get("/v1/articles", params=query(params))
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def newest_first(corpus: list[int], *articles: int) -> list[int]:
    """These articles in the API's order (ids come in content-hash order, not the specs')."""
    dated = dict(zip(corpus, (s.published_on for s in SPECS), strict=True))
    return sorted(articles, key=lambda a: (dated[a] or date.min, a), reverse=True)


def test_search_and_filters(client: httpx.Client, corpus: list[int]) -> None:
    storm, storm2, bank, rescue, greve, undated = corpus
    assert ids(client) == newest_first(corpus, greve, rescue, bank, storm2, storm, undated)  # undated last
    assert ids(client, q="storm") == newest_first(corpus, rescue, storm2, storm)  # title or body
    assert ids(client, q='"sinking trawler"') == [rescue]
    assert ids(client, q='"trawler sinking"') == []
    assert ids(client, q="rates or freight") == newest_first(corpus, bank, undated)
    assert ids(client, q="storm -lifeboat") == newest_first(corpus, storm2, storm)
    assert ids(client, q="storm", sort="relevance")[0] != rescue  # in the title (weight A) ranks above the body
    assert ids(client, q="grève", language="fr") == [greve]
    for odd in ['"', "-", "or", "!!&|:*", "'", "()", "a & b", "\\"]:  # web-search syntax never fails
        assert client.get("/v1/articles", params={"q": odd}).status_code == 200, odd
    assert ids(client, source="Reuters") == newest_first(corpus, rescue, storm)
    assert ids(client, language="fr") == [greve]
    assert ids(client, country="fr") == newest_first(corpus, greve, storm2, storm)
    assert ids(client, keyword="storm") == newest_first(corpus, storm2, storm)
    assert ids(client, entity="Paris") == [storm]
    assert ids(client, entity="Paris", entity_type="person") == []
    assert ids(client, **{"from": D2, "to": D2}) == newest_first(corpus, bank, storm2)
    assert ids(client, to=D1) == [storm]
    assert ids(client, cluster=storm2) == ids(client, cluster=storm) == newest_first(corpus, storm2, storm)
    assert ids(client, canonical="true") == newest_first(corpus, greve, rescue, bank, storm, undated)
    assert ids(client, q="storm", source="Reuters", country="GB") == [rescue]


def test_pages_and_bad_requests(client: httpx.Client, corpus: list[int]) -> None:
    seen, cursor = [], None
    while True:
        page = client.get("/v1/articles", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ids(client, limit=100)
    for bad in [{"cursor": "nonsense"}, {"cursor": "eyJzIjoicmVsZXZhbmNlIiwiayI6MSwiaSI6MX0"},
                {"sort": "relevance"}, {"entity_type": "person"}, {"from": D3, "to": D1}]:
        answer = client.get("/v1/articles", params=query(bad))
        assert answer.status_code == 400 and answer.json()["detail"], bad
    for bad in [{"limit": 0}, {"limit": 101}, {"country": "FRA"}, {"q": "a\x00b"}, {"cluster": 2**63}]:
        assert client.get("/v1/articles", params=bad).status_code == 422, bad


def test_record_etag_and_story(client: httpx.Client, corpus: list[int]) -> None:
    storm, storm2 = corpus[:2]
    found = client.get(f"/v1/articles/{storm2}")
    assert found.status_code == 200
    record = found.json()
    assert record["title"] == "Storm batters the coast" and record["cluster_id"] == storm
    assert record["drops"][0]["path"].startswith("/drops/consumers/")
    assert {m["id"] for m in record["cluster_members"]} == {storm, storm2}
    etag = found.headers["etag"]
    again = client.get(f"/v1/articles/{storm2}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(f"/v1/articles/{storm2}", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/v1/articles/999999").status_code == 404

    story = client.get(f"/v1/clusters/{storm2}").json()  # a member's id finds the story
    assert story["id"] == storm and story["canonical"]["id"] == storm
    assert [m["id"] for m in story["members"]] == [storm, storm2] and story["members"][0]["similarity"] == 1.0
    assert 0.8 <= story["members"][1]["similarity"] < 1
    assert (story["first_published_on"], story["last_published_on"]) == (str(D1), str(D2))
    assert story["sources"] == ["BBC News", "Reuters"]
    assert client.get("/v1/clusters/999999").status_code == 404


def test_stats_and_entities(client: httpx.Client, corpus: list[int]) -> None:
    timeline = client.get("/v1/stats/timeline", params=query({"from": D1, "to": D3, "by": "source"})).json()
    assert (timeline["from"], timeline["to"], timeline["interval"]) == (str(D1), str(D3), "day")
    assert {"bucket": str(D3), "key": "Reuters", "count": 1} in timeline["items"]
    assert sum(p["count"] for p in timeline["items"]) == 5  # the undated one is in no day
    by_country = client.get("/v1/stats/timeline", params=query({"from": D1, "to": D3, "by": "country"})).json()
    assert {"bucket": str(D3), "key": "FR", "count": 1} in by_country["items"]
    hourly = client.get("/v1/stats/timeline", params={"interval": "hour"}).json()
    assert sum(p["count"] for p in hourly["items"]) == 6  # by when stored: today
    top = client.get("/v1/entities").json()["items"]
    assert {(e["text"], e["articles"]) for e in top} >= {("Paris", 1), ("Federal Reserve", 1)}
    assert [e["text"] for e in client.get("/v1/entities", params={"q": "fed"}).json()["items"]] == [
        "Federal Reserve"]
    assert client.get("/v1/entities", params={"q": "%"}).json()["items"] == []


def test_every_v1_route_needs_a_key(client: httpx.Client, sessions) -> None:
    schema = httpx.get(f"{client.base_url}/openapi.json").json()
    assert httpx.get(f"{client.base_url}/docs").status_code == 200
    routes = [path.replace("{article_id}", "1").replace("{cluster_id}", "1")
              for path, ops in schema["paths"].items() if path.startswith("/v1") and "get" in ops]
    assert {"/v1/articles", "/v1/articles/1", "/v1/clusters/1", "/v1/changes", "/v1/stats/timeline",
            "/v1/entities"} <= set(routes)
    for route in routes:
        assert httpx.get(f"{client.base_url}{route}").status_code == 401, route
        assert httpx.get(f"{client.base_url}{route}",
                         headers={"Authorization": "Bearer nf_unknown"}).status_code == 401, route


def test_reader_role_reads_the_views_and_nothing_else(database_url: str, sessions, corpus: list[int]) -> None:
    login = f"newsflow_test_reader_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(database_url, autocommit=True)
    admin.execute(f"CREATE ROLE {login} LOGIN")
    try:
        admin.execute(f"GRANT newsflow_reader TO {login}")
        url = make_url(database_url).set(username=login).render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as reader:
            titles = {r[0] for r in reader.execute("SELECT title FROM reader.articles")}
            assert titles == {s.title for s in SPECS}
            for view in ["drops", "clusters", "entities", "article_entities", "article_links", "article_changes"]:
                reader.execute(f"SELECT * FROM reader.{view} LIMIT 1")
            for denied in ["SELECT * FROM blobs", "SELECT * FROM public.articles",
                           "UPDATE reader.articles SET title = 'x'", "DELETE FROM reader.drops",
                           "INSERT INTO reader.entities (type, name) VALUES ('person', 'x')",
                           "CREATE TABLE public.mine (x int)", "CREATE VIEW reader.mine AS SELECT 1"]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(denied)
    finally:
        admin.execute(f"DROP ROLE {login}")
        admin.close()
    with sessions() as session:  # NOLOGIN itself
        assert session.execute(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'newsflow_reader'")
                               ).scalar_one() is False


def test_migration_0008_goes_down_and_up_again(database_url: str) -> None:
    """Down to 0007 and back keeps the data and the role (roles outlive databases: another database's
    grants must not make the downgrade fail), and the backfill gives existing articles vectors and changes."""
    with scratch_database(ADMIN_URL, f"newsflow_test_mig_{uuid.uuid4().hex[:8]}") as url:
        command.upgrade(alembic_config(url), "0007")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO articles (content_hash, title, paragraphs, body, encoding, pipeline_version, "
                         "language) VALUES ('h', 'Grève générale', '[]', 'Les enseignants manifestent', 'utf-8', "
                         "'1', 'fr')")
        command.upgrade(alembic_config(url), "head")
        command.downgrade(alembic_config(url), "0007")  # the test session's database still grants the role
        command.upgrade(alembic_config(url), "head")
        with psycopg.connect(url, autocommit=True) as conn:
            vector = conn.execute("SELECT search_vector::text FROM articles").fetchone()[0]
            assert "'enseign'" in vector  # French stemming: the language was known
            assert conn.execute("SELECT change FROM article_changes").fetchall() == [("created",)]
            assert conn.execute("SELECT count(*) FROM reader.articles").fetchone()[0] == 1
            assert conn.execute("SELECT has_table_privilege('newsflow_reader', 'reader.articles', 'SELECT')"
                                ).fetchone()[0]


def test_migration_0009_moves_search_vectors_into_the_row(database_url: str) -> None:
    """An article's vector, stored out of line (TOAST) before 0009, is in its row after it, unchanged; the
    downgrade restores the storage setting."""
    body = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))[0].read_text()  # the same one everywhere
    chunks = "SELECT count(*) FROM pg_toast.pg_toast_{}".format

    def setting(conn: psycopg.Connection) -> str:
        return conn.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = 'articles'::regclass "
                            "AND attname = 'search_vector'").fetchone()[0]

    with scratch_database(ADMIN_URL, f"newsflow_test_mig_{uuid.uuid4().hex[:8]}") as url:
        command.upgrade(alembic_config(url), "0008")
        with psycopg.connect(url, autocommit=True) as conn:
            table = conn.execute("SELECT 'articles'::regclass::oid").fetchone()[0]
            conn.execute("INSERT INTO articles (content_hash, title, paragraphs, body, encoding, pipeline_version, "
                         "search_vector) VALUES ('h', 'A title', '[]', %(b)s, 'utf-8', '1', to_tsvector(%(b)s))",
                         {"b": body})
            vector = conn.execute("SELECT search_vector::text FROM articles").fetchone()[0]
            before = conn.execute(chunks(table)).fetchone()[0]
            size = conn.execute("SELECT pg_column_size(search_vector) FROM articles").fetchone()[0]
        assert size > 2000, "the test's vector is too small to be stored out of line"
        command.upgrade(alembic_config(url), "head")
        with psycopg.connect(url, autocommit=True) as conn:
            assert setting(conn) == "m"
            assert conn.execute("SELECT search_vector::text FROM articles").fetchone()[0] == vector
            assert conn.execute(chunks(table)).fetchone()[0] < before  # the vector's chunks are gone
        command.downgrade(alembic_config(url), "0008")
        with psycopg.connect(url, autocommit=True) as conn:
            assert setting(conn) == "x"


def test_the_search_vector_follows_the_language(sessions) -> None:
    """Stored in `english`; made again in the detected language's configuration (French drops "les" as a stop
    word), and again when a re-enrichment finds another language."""
    spec = Spec("Les grèves", "Les enseignants manifestent contre les réformes.", D1, None, "fr")

    def lexemes(article_id: int) -> str:
        with sessions() as session:
            return session.execute(text("SELECT search_vector::text FROM articles WHERE id = :id"),
                                   {"id": article_id}).scalar_one()

    with transaction(sessions) as session:
        [article] = store(session, [spec], "language")
    assert "'les'" in lexemes(article)  # english: not a stop word
    with transaction(sessions) as session:
        enrich(session, [spec], [article])
    assert "'les'" not in lexemes(article) and "'enseign'" in lexemes(article)
    with transaction(sessions) as session:
        enrich(session, [replace(spec, language="en")], [article])
    assert "'les'" in lexemes(article)


def listed(sessions, **filters: str) -> list[int]:
    """The ids of the first page of a listing (10 articles), in its order."""
    with sessions() as session:
        return [r.id for r in list_articles(session, ArticleQuery(**filters), limit=10, cursor=None).records()]


def test_keyword_rows_and_entity_links_follow_the_article(sessions) -> None:
    """`article_keywords` and the entity links carry their article's sort key (migration 0010), so the keyword and
    entity filters walk them in the published order: when a copy that sorts first gives the article another date,
    and when a re-enrichment changes its keywords, the rows follow and the listings keep the order."""
    storm = Spec("Storm hits the coast", STORM, D1, "Reuters", "en", (), ("coast", "storm"), (("place", "Paris"),))
    other = Spec("Another storm", "Fishermen stayed in port as a second storm reached the harbour on Saturday.", D2,
                 "Reuters", "en", (), ("storm",), (("place", "Paris"),))
    truncate_all(sessions)
    first, second = store_and_enrich(sessions, [storm, other], "follow")

    def rows_match_articles() -> None:
        with sessions() as session:
            rows = session.execute(text("SELECT article_id, keyword, sort_date::text FROM article_keywords"))
            derived = session.execute(text("SELECT id, k, sort_date::text FROM articles, unnest(keywords) AS k"))
            assert set(rows) == set(derived)
            assert session.execute(text("SELECT count(*) FROM article_entities ae JOIN articles a "
                                        "ON a.id = ae.article_id WHERE ae.sort_date <> a.sort_date")).scalar_one() == 0

    rows_match_articles()
    assert listed(sessions, keyword="storm") == listed(sessions, entity="Paris") == [second, first]
    with sessions() as session:
        primary = session.execute(text("SELECT primary_sha256 FROM articles WHERE id = :id"), {"id": first}
                                  ).scalar_one()
    # A copy of the first article's body whose drop sorts before its primary: the article takes its date (D3).
    tag = next(t for t in (f"copy{n}" for n in range(1000))
               if hashlib.sha256(f"{t}:0:{STORM}".encode()).hexdigest() < primary)
    with transaction(sessions) as session:
        assert store(session, [replace(storm, published_on=D3)], tag) == [first]
    rows_match_articles()
    assert listed(sessions, keyword="storm") == listed(sessions, entity="Paris") == [first, second]
    with transaction(sessions) as session:
        enrich(session, [replace(storm, keywords=("coast",))], [first])
    rows_match_articles()
    assert listed(sessions, keyword="storm") == [second] and listed(sessions, keyword="coast") == [first]


def test_migration_0010_fills_keyword_rows_and_link_dates(database_url: str) -> None:
    """Articles enriched before 0010 get their keyword rows and their links the article's sort key (undated:
    -infinity); down to 0009 and up again gives the same rows."""
    with scratch_database(ADMIN_URL, f"newsflow_test_mig_{uuid.uuid4().hex[:8]}") as url:
        command.upgrade(alembic_config(url), "0009")
        with psycopg.connect(url, autocommit=True) as conn:
            dated, undated = (conn.execute(
                "INSERT INTO articles (content_hash, title, paragraphs, body, encoding, pipeline_version, "
                "published_on, keywords) VALUES (%s, 't', '[]', 'b', 'utf-8', '1', %s, %s) RETURNING id",
                (h, day, keywords)).fetchone()[0] for h, day, keywords in [("h1", D1, ["storm", "coast", "storm"]),
                                                                           ("h2", None, ["storm"])])
            entity = conn.execute("INSERT INTO entities (type, name) VALUES ('place', 'Paris') RETURNING id"
                                  ).fetchone()[0]
            conn.execute("INSERT INTO article_entities (article_id, entity_id, count) VALUES (%s, %s, 1), "
                         "(%s, %s, 2)", (dated, entity, undated, entity))
        expected_keywords = {(dated, "coast", D1.isoformat()), (dated, "storm", D1.isoformat()),
                             (undated, "storm", "-infinity")}
        for _ in range(2):
            command.upgrade(alembic_config(url), "head")
            with psycopg.connect(url, autocommit=True) as conn:
                keywords = set(conn.execute("SELECT article_id, keyword, sort_date::text FROM article_keywords"))
                links = dict(conn.execute("SELECT article_id, sort_date::text FROM article_entities").fetchall())
            assert keywords == expected_keywords
            assert links == {dated: D1.isoformat(), undated: "-infinity"}
            command.downgrade(alembic_config(url), "0009")


def test_top_entities_count_the_articles_of_the_window(sessions) -> None:
    """`GET /v1/entities` reads the window from the links' own sort key: an undated article counts in no window,
    only all time."""
    paris, rome = ("place", "Paris"), ("place", "Rome")
    specs = [Spec("One", "Police closed the bridge on Monday after a crash.", D1, None, "en", entities=(paris,)),
             Spec("Two", "Rain fell on both cities for a week without a break.", D3, None, "en",
                  entities=(paris, rome)),
             Spec("Three", "Museums reopened their doors to visitors this spring.", None, None, "en",
                  entities=(paris,))]
    truncate_all(sessions)
    store_and_enrich(sessions, specs, "top")

    def top(start: date | None, end: date | None) -> dict[str, int]:
        with sessions() as session:
            return {e.text: e.articles for e in top_entities(session, start=start, end=end, kind=None, prefix=None,
                                                             limit=10)}

    assert top(None, None) == {"Paris": 3, "Rome": 1}
    assert top(D2, None) == {"Paris": 1, "Rome": 1}
    assert top(None, D2) == {"Paris": 1}
    assert top(D1, D3) == {"Paris": 2, "Rome": 1}


def test_a_name_of_two_entities_lists_the_articles_of_both(sessions) -> None:
    """"Washington" the person and the place: `entity` alone lists the articles of both, newest first, each once;
    with `entity_type`, one entity's (walked through its links in date order)."""
    person, place = ("person", "Washington"), ("place", "Washington")
    specs = [Spec("One", "The general crossed the river at night with his men.", D1, None, "en", entities=(person,)),
             Spec("Two", "The city closed its museums for the holiday weekend.", D2, None, "en", entities=(place,)),
             Spec("Three", "A statue of the general stands in the city's square.", D3, None, "en",
                  entities=(person, place))]
    truncate_all(sessions)
    one, two, three = store_and_enrich(sessions, specs, "two-types")

    assert listed(sessions, entity="Washington") == [three, two, one]
    assert listed(sessions, entity="Washington", entity_type="person") == [three, one]
    assert listed(sessions, entity="Washington", entity_type="place") == [three, two]
