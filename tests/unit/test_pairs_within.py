"""The pairs within one storage batch (articles sharing a band key), against the obvious dictionary."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from services.enricher.tasks import message_ids
from shared.clusters import pairs_within


def by_dictionary(ids: list[int], keys: np.ndarray) -> dict[int, set[int]]:
    holders: dict[tuple[int, int], list[int]] = defaultdict(list)
    for article_id, row in zip(ids, keys.tolist(), strict=True):
        for band, key in enumerate(row):
            holders[(band, key)].append(article_id)
    found: dict[int, set[int]] = {i: set() for i in ids}
    for holder_ids in holders.values():
        for i in range(1, len(holder_ids)):
            found[holder_ids[i]].update(holder_ids[:i])
    return found


@pytest.mark.parametrize("seed", range(20))
def test_same_pairs_as_a_dictionary_of_every_cell(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count, bands = int(rng.integers(0, 40)), int(rng.integers(1, 33))
    ids = sorted(rng.choice(10_000, size=count, replace=False).tolist())
    keys = rng.integers(0, int(rng.choice([3, 50, 2**62])), size=(count, bands), dtype=np.int64)
    assert pairs_within(ids, keys) == by_dictionary(ids, keys)


def test_the_same_key_in_another_band_is_no_pair() -> None:
    keys = np.array([[1, 2], [2, 1], [1, 5]], dtype=np.int64)
    assert pairs_within([10, 20, 30], keys) == {10: set(), 20: set(), 30: {10}}


def test_an_enrichment_message_names_articles_in_either_form() -> None:
    assert message_ids({"article_ids": [3, 1]}) == [3, 1]
    assert message_ids({"items": [{"article_id": 5, "title": "t", "body": "b"}]}) == [5]  # before 2026-11-29
