"""The near-duplicate arithmetic: hashed shingle sets give SPEC section 4's Jaccard exactly, and the
signature is datasketch's MinHash of those hashes, pinned so that it never changes by accident."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from services.worker.parsing import parse_drop
from shared.records import ParsedArticle
from shared.similarity import (
    NUM_PERM,
    SEED,
    _sorted_unique,
    band_keys,
    jaccard,
    shingle_hashes,
    shingles_bytes,
    shingles_from_bytes,
    signature,
    signature_bytes,
    sketch,
)
from tests.families import jaccard as string_jaccard
from tests.families import shingles as string_shingles

WIKINEWS = Path(__file__).parents[1] / "data" / "wikinews"


def bodies(count: int) -> list[str]:
    parsed = (parse_drop(p.read_bytes()) for p in sorted(WIKINEWS.glob("*.txt"))[:count])
    return [a.body for a in parsed if isinstance(a, ParsedArticle)]


def test_hashed_sets_match_string_shingles_and_their_jaccard() -> None:
    texts = bodies(40)
    texts.append(texts[0].replace(".", "!") + " One more sentence at the end of it.")  # a near-duplicate
    for a, b in itertools.combinations(texts, 2):
        ha, hb = shingle_hashes(a), shingle_hashes(b)
        assert len(ha) == len(string_shingles(a))
        assert jaccard(ha, hb) == string_jaccard(string_shingles(a), string_shingles(b))
    assert jaccard(shingle_hashes(texts[0]), shingle_hashes(texts[-1])) > 0.9


HASHES = st.sets(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 2, 2**64 - 1])), max_size=60)


@settings(max_examples=300, deadline=None)
@given(HASHES, HASHES)
def test_jaccard_is_the_sets_jaccard(a: set[int], b: set[int]) -> None:
    """Edges included: an empty side, the largest hash (binary search past the end), one set inside the other."""
    expected = len(a & b) / len(a | b) if a | b else 1.0
    arrays = [np.array(sorted(s), dtype=np.uint64) for s in (a, b, a | b)]
    assert jaccard(arrays[0], arrays[1]) == jaccard(arrays[1], arrays[0]) == expected
    assert jaccard(arrays[0], arrays[2]) == (len(a) / len(a | b) if a | b else 1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1])), max_size=80))
def test_sorted_unique_is_numpys_unique(values: list[int]) -> None:
    """Repeats, the extremes, one value, none: the sets storage compares must not change with the method."""
    array = np.array(values, dtype=np.uint64)
    found = _sorted_unique(array)
    assert found.dtype == np.uint64 and found.tolist() == np.unique(array).tolist()


def test_shingle_sets_are_sorted_unique_and_round_trip() -> None:
    hashes = shingle_hashes("the cat sat on the mat, the cat sat on the mat")
    assert len(hashes) == 6  # 'the cat sat on the' repeats
    assert (np.diff(hashes.astype(np.float64)) > 0).all()
    assert (shingles_from_bytes(shingles_bytes(hashes)) == hashes).all()


def test_short_and_empty_texts() -> None:
    assert len(shingle_hashes("")) == 0 and len(shingle_hashes("...")) == 0
    assert len(shingle_hashes("two words")) == 1
    assert jaccard(shingle_hashes(""), shingle_hashes("")) == 1.0
    assert jaccard(shingle_hashes("two words"), shingle_hashes("Two, words!")) == 1.0
    assert (signature(shingle_hashes("")) == 2**32 - 1).all()


def test_signature_is_datasketchs_minhash_of_the_shingle_hashes() -> None:
    for body in bodies(10):
        hashes = shingle_hashes(body)
        reference = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=lambda v: v & 0xFFFFFFFF)
        reference.update_batch([int(h) for h in hashes])
        assert (signature(hashes) == reference.hashvalues).all()


def test_the_recipe_is_pinned() -> None:
    """Stored signatures and band keys stay comparable only while this digest holds: changing it
    means a migration that recomputes them (see shared/similarity.py)."""
    shingles, minhash = sketch("Top Japanese and US military officials affirmed a commitment to the alliance.")
    assert hashlib.sha256(shingles).hexdigest()[:16] == PINNED_SHINGLES
    assert hashlib.sha256(minhash).hexdigest()[:16] == PINNED_SIGNATURE
    keys = band_keys(signature(shingles_from_bytes(shingles)))
    assert hashlib.sha256(keys.astype("<i8").tobytes()).hexdigest()[:16] == PINNED_KEYS
    assert signature_bytes(signature(shingles_from_bytes(shingles))) == minhash


PINNED_SHINGLES = "f768d4c9b8d8c8ff"
PINNED_SIGNATURE = "d15c179e997753dd"
PINNED_KEYS = "b4da7b29a1a0a9ba"


def test_band_keys_of_a_batch_are_each_signatures_keys() -> None:
    sigs = np.stack([signature(shingle_hashes(body)) for body in bodies(8)])
    batch = band_keys(sigs)
    assert batch.shape == (len(sigs), 32) and batch.dtype == np.int64
    for sig, keys in zip(sigs, batch, strict=True):
        assert (band_keys(sig) == keys).all()
