"""Full-text search of articles: which text search configuration an article's language gets, and the SQL that
builds its `search_vector` (title weighted A, body B).

Who makes it: the worker, in its hand-over transaction (`english`, one statement per batch), so that
`to_tsvector`, more than half of an article's insert, runs beside parsing and not in storage's serial path. It
travels in PostgreSQL's binary form (`tsvectorsend`), which storage sends back as it is (`BinaryVector`): the
text form cost storage's database 60 µs an article to parse, the binary one 10. Storage makes the vector itself
for an outcome without one (from an older worker); the enrichment's update remakes it in the detected
language's configuration."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.orm import Session

from shared.db import execute_batch

# ISO 639-1 (what enrichment detects) to the PostgreSQL configuration that stems that language. Only
# configurations every supported PostgreSQL (13+) ships in pg_catalog; any other language is `simple`
# (lowercased words, no stemming, no stop words), as is an article whose language is not known.
TS_CONFIGS = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "fi": "finnish", "fr": "french", "hu": "hungarian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "nb": "norwegian", "nl": "dutch", "no": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish",
}  # fmt: skip
# Until enrichment has detected the language: the corpus is mostly English.
DEFAULT_CONFIG = "english"
FALLBACK_CONFIG = "simple"


def ts_config(language: str | None) -> str:
    """The configuration an article in this language is indexed with."""
    if language is None:
        return DEFAULT_CONFIG
    return TS_CONFIGS.get(language, FALLBACK_CONFIG)


def search_vector_sql(config: str, title: str, body: str) -> str:
    """SQL for an article's search vector, from SQL expressions for its configuration, title and body."""
    return f"setweight(to_tsvector({config}, {title}), 'A') || setweight(to_tsvector({config}, {body}), 'B')"


_CASES = " ".join(f"WHEN '{code}' THEN '{name}'" for code, name in sorted(TS_CONFIGS.items()))
# The same mapping in SQL, for `.format(language=<expression>)` (the migration's backfill).
CONFIG_OF_LANGUAGE_SQL = (f"CASE WHEN {{language}} IS NULL THEN '{DEFAULT_CONFIG}' ELSE "
                          f"CASE {{language}} {_CASES} ELSE '{FALLBACK_CONFIG}' END END::regconfig")


VECTORS = f"""
SELECT tsvectorsend({search_vector_sql(f"'{DEFAULT_CONFIG}'::regconfig", "u.t", "u.b")})
FROM unnest(%(titles)b::text[], %(bodies)b::text[]) WITH ORDINALITY AS u(t, b, n) ORDER BY u.n
"""


def search_vectors(session: Session, texts: Sequence[tuple[str, str]]) -> list[str]:
    """The `english` search vector of each (title, body), base64 of its binary form, in one statement."""
    if not texts:
        return []
    return [base64.b64encode(v).decode("ascii") for v in execute_batch(
        session, VECTORS, {"titles": [t for t, _ in texts], "bodies": [b for _, b in texts]}).scalars()]


class BinaryVector(bytes):
    """A tsvector in PostgreSQL's binary form, sent as a tsvector (`BinaryVectorDumper`)."""

    @classmethod
    def of(cls, encoded: str | None) -> BinaryVector | None:
        """From an outcome's `search_vector`; None if it has none, or one in the text form that workers sent
        before (no base64 holds its quotes): storage then makes the vector itself."""
        if not encoded:
            return None
        try:
            return cls(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            return None


class BinaryVectorDumper(Dumper):
    format = Format.BINARY
    oid = psycopg.postgres.types["tsvector"].oid

    def dump(self, obj: BinaryVector) -> bytes:
        return obj


psycopg.adapters.register_dumper(BinaryVector, BinaryVectorDumper)
