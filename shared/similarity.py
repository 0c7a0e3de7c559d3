"""Near-duplicate arithmetic: word 5-shingles as sorted 64-bit hashes, exact Jaccard, MinHash, LSH band keys.

The worker turns a body into its *shingle set* once: every word 5-shingle (lowercase, punctuation
removed) hashed to 64 bits, sorted and unique (`shingle_hashes`). That array is both what the
MinHash is made from and the compact form storage keeps per article and compares candidates with
(`jaccard` on two sorted arrays), so no stage tokenises a body twice. With 64-bit hashes two
distinct shingles of a pair collide with probability about n² / 2⁶⁴ (n ≈ 1,000): never in practice.

Never change NUM_PERM, SEED, ROWS, the word, shingle or band hash once signatures are
stored: every stored signature and band key would silently stop matching new ones. Migration 0005
recomputed them when this recipe replaced datasketch's SHA-1 per shingle string; another change
needs the same (or `newsflow clusters rebuild` after clearing `articles.minhash`).

Banding. A pair with Jaccard similarity J shares at least one of BANDS band keys with
probability P(J) = 1 - (1 - J**ROWS) ** BANDS. datasketch's own optimum for threshold 0.8 and
128 permutations, (b, r) = (9, 13), balances false positives against false negatives and finds a
pair exactly at the threshold only ~40% of the time. We confirm every candidate by its exact
Jaccard, so false positives cost a little CPU and nothing in precision; we choose b = 32, r = 4
for recall instead:

    J     0.3    0.4    0.5    0.6    0.7      0.8          0.9
    P(J)  0.23   0.56   0.87   0.988  0.9998   1 - 5e-8     1 - 1e-15

so a pair at or above 0.8 is missed with probability below one in ten million, and unrelated
articles (J near 0) are almost never compared exactly.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache

import numpy as np

NUM_PERM = 128
SEED = 1
BANDS = 32
ROWS = 4
SHINGLE_WORDS = 5
assert BANDS * ROWS == NUM_PERM

_WORD = re.compile(r"\w+")
_SHINGLE_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial over a shingle's words is injective mod 2^64
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64's finaliser
_LOW_32 = np.uint64(0xFFFFFFFF)
_WORD_CACHE_MAX = 500_000  # words; a news vocabulary fits, and the cache is cleared past it (about 60 MB)
_word_hashes: dict[str, int] = {}


@cache
def permutations() -> np.ndarray:
    """datasketch's affine32 scheme: h -> a * fmix32(h) + b (mod 2^32), one (a, b) per permutation. The
    signature below is computed with these parameters and datasketch's finaliser, and a unit test pins
    it to MinHash.update_batch, so it is datasketch's MinHash with the shingle hashes as its hash values.
    Imported when first needed: datasketch imports scipy, a third of a second of the start of every command
    and service, most of which never make a signature (the worker asks before its pool forks)."""
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32").permutations


def _word_hash(word: str) -> int:
    value = _word_hashes.get(word)
    if value is None:
        if len(_word_hashes) >= _WORD_CACHE_MAX:
            _word_hashes.clear()
        value = _word_hashes[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return value


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX_1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX_2
    return x ^ (x >> np.uint64(31))


def shingle_hashes(text: str) -> np.ndarray:
    """The text's word 5-shingles (lowercase, punctuation removed) as sorted unique uint64 hashes.

    A text of fewer than five words is one shingle of all its words; an empty text has none.
    """
    words = _WORD.findall(text.casefold())
    if not words:
        return np.empty(0, dtype=np.uint64)
    hashes = np.fromiter((_word_hash(w) for w in words), dtype=np.uint64, count=len(words))
    count = max(1, len(words) - SHINGLE_WORDS + 1)
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic mod 2^64 is the point
        for offset in range(min(SHINGLE_WORDS, len(words))):
            combined = combined * _SHINGLE_MULTIPLIER + hashes[offset:offset + count]
        return _sorted_unique(_splitmix64(combined))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of a 1-d array, by a sort and a comparison with the neighbour: np.unique took 51 µs for a news
    article's 770 hashes, this 5 (NumPy 2's unique does more than sort)."""
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle sets given as sorted unique arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    small, large = (a, b) if a.size <= b.size else (b, a)
    if small.size == 0:
        return 0.0
    # Each of the smaller set's hashes looked up in the larger by binary search: a third of intersect1d's time,
    # which sorts both together (this runs under the index lock, once per candidate pair).
    found = np.minimum(np.searchsorted(large, small), large.size - 1)
    common = int(np.count_nonzero(large[found] == small))
    return common / (a.size + b.size - common)


def signature(shingles: np.ndarray) -> np.ndarray:
    """MinHash signature of a shingle set: NUM_PERM uint32 values (all 2^32 - 1 for an empty set)."""
    if shingles.size == 0:
        return np.full(NUM_PERM, 2**32 - 1, dtype=np.uint32)
    a, b = permutations()
    values = _fmix32((shingles & _LOW_32).astype(np.uint32)).reshape(-1, 1)
    with np.errstate(over="ignore"):
        return (values * a + b).min(axis=0)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it to every hash value (affine32 scheme)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


def shingles_bytes(shingles: np.ndarray) -> bytes:
    return shingles.astype("<u8").tobytes()


def shingles_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8")


def signature_bytes(sig: np.ndarray) -> bytes:
    return sig.astype("<u4").tobytes()


def signature_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4")


def sketch(text: str) -> tuple[bytes, bytes]:
    """What the worker computes once per body: (shingle set, MinHash signature), as stored."""
    shingles = shingle_hashes(text)
    return shingles_bytes(shingles), signature_bytes(signature(shingles))


def band_keys(sigs: np.ndarray) -> np.ndarray:
    """Signed 64-bit band keys (what PostgreSQL's bigint holds): each band's ROWS values mixed into 64 bits.
    Signatures of shape (NUM_PERM,) give (BANDS,); a batch of shape (n, NUM_PERM) gives (n, BANDS) at once."""
    rows = sigs.astype(np.uint64).reshape(*sigs.shape[:-1], BANDS, ROWS)
    keys = np.zeros(rows.shape[:-1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for row in range(ROWS):
            keys = _splitmix64(keys * _SHINGLE_MULTIPLIER + rows[..., row])
    return keys.view(np.int64)


def candidate_probability(similarity: float) -> float:
    """P(a pair of this Jaccard similarity shares a band key): the curve in the module docstring."""
    return 1.0 - (1.0 - similarity**ROWS) ** BANDS
