"""keywords one row each, and entity links, carry the article's sort key: filters walk them in order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 05:00:00

`GET /v1/articles?keyword=K` and `?entity=X` list newest first. Before, PostgreSQL had two ways, both slow for a
common keyword or entity: walk every article in order and test each one (its keywords through the row, its
entities through their primary key), or take every match from an index (GIN of `keywords`, or the entity's
links) and sort them all. With the article's `sort_date` beside each keyword and each link, and an index on
(keyword or entity, sort_date, article), a page is the next few entries of one index in order. `GET /v1/entities`
(the most mentioned entities of a window) reads the window's links from a second index, (sort_date, entity)
with their counts, without joining the articles for their dates.

`article_keywords` replaces the GIN index of `articles.keywords`, and is derived from the array by a trigger (on
insert, and on an update of the keywords or the date), so every writer keeps it exact; the links' `sort_date` is
written with the link (storage joins the article) and follows the article's date by the same trigger. Existing
rows are filled here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOLLOW = """
CREATE FUNCTION article_terms_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.sort_date IS DISTINCT FROM NEW.sort_date THEN
        UPDATE article_entities SET sort_date = NEW.sort_date WHERE article_id = NEW.id;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM article_keywords WHERE article_id = NEW.id;
    END IF;
    INSERT INTO article_keywords (article_id, keyword, sort_date)
        SELECT DISTINCT NEW.id, k, NEW.sort_date FROM unnest(NEW.keywords) AS k WHERE k IS NOT NULL;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "article_keywords",
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("keyword", sa.Text(), nullable=False),
        sa.Column("sort_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"], name=op.f("fk_article_keywords_article_id_articles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("article_id", "keyword", name=op.f("pk_article_keywords")),
    )
    op.execute("INSERT INTO article_keywords (article_id, keyword, sort_date) "
               "SELECT DISTINCT a.id, k, a.sort_date FROM articles a, unnest(a.keywords) AS k WHERE k IS NOT NULL")
    op.create_index("ix_article_keywords_keyword_sort", "article_keywords", ["keyword", "sort_date", "article_id"])
    op.drop_index("ix_articles_keywords", table_name="articles")  # the GIN index of the array: nothing reads it now

    op.add_column("article_entities", sa.Column("sort_date", sa.Date(), nullable=True))
    op.execute("UPDATE article_entities ae SET sort_date = a.sort_date FROM articles a WHERE a.id = ae.article_id")
    op.alter_column("article_entities", "sort_date", nullable=False)
    op.drop_index("ix_article_entities_entity_id", table_name="article_entities")
    op.create_index("ix_article_entities_entity_sort", "article_entities", ["entity_id", "sort_date", "article_id"])
    op.create_index("ix_article_entities_sort_entity", "article_entities", ["sort_date", "entity_id"],
                    postgresql_include=["count"])

    op.execute(FOLLOW)
    # Inserted with keywords (a copy, a backfill), or keywords or date changed (enrichment, a new primary drop).
    op.execute("CREATE TRIGGER article_terms_on_insert AFTER INSERT ON articles FOR EACH ROW "
               "WHEN (NEW.keywords IS NOT NULL) EXECUTE FUNCTION article_terms_follow()")
    op.execute("CREATE TRIGGER article_terms_on_update AFTER UPDATE OF keywords, published_on ON articles "
               "FOR EACH ROW WHEN (OLD.keywords IS DISTINCT FROM NEW.keywords "
               "OR OLD.sort_date IS DISTINCT FROM NEW.sort_date) EXECUTE FUNCTION article_terms_follow()")


def downgrade() -> None:
    op.execute("DROP TRIGGER article_terms_on_update ON articles")
    op.execute("DROP TRIGGER article_terms_on_insert ON articles")
    op.execute("DROP FUNCTION article_terms_follow()")
    op.drop_index("ix_article_entities_sort_entity", table_name="article_entities")
    op.drop_index("ix_article_entities_entity_sort", table_name="article_entities")
    op.create_index("ix_article_entities_entity_id", "article_entities", ["entity_id", "article_id"])
    op.drop_column("article_entities", "sort_date")
    op.create_index("ix_articles_keywords", "articles", ["keywords"], postgresql_using="gin")
    op.drop_table("article_keywords")
