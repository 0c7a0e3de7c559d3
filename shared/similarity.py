"""Near-duplicate arithmetic: word 5-shingles, exact Jaccard, MinHash signatures and LSH band keys.

Never change NUM_PERM, SEED, ROWS or the band hash once signatures are stored: every stored
signature and band key would silently stop matching new ones (rebuild the index if you must).

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

import numpy as np
from datasketch import MinHash

NUM_PERM = 128
SEED = 1
BANDS = 32
ROWS = 4
SHINGLE_WORDS = 5
assert BANDS * ROWS == NUM_PERM

_WORD = re.compile(r"\w+")


def shingles(text: str) -> set[str]:
    """The set of word 5-shingles of a text, lowercased with punctuation removed."""
    words = _WORD.findall(text.casefold())
    if len(words) < SHINGLE_WORDS:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def signature(shingle_set: set[str]) -> np.ndarray:
    """MinHash signature: NUM_PERM uint32 values."""
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED)
    minhash.update_batch([s.encode("utf-8") for s in sorted(shingle_set)])
    return minhash.hashvalues.astype(np.uint32)


def signature_bytes(sig: np.ndarray) -> bytes:
    return sig.astype("<u4").tobytes()


def signature_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4")


def band_keys(sig: np.ndarray) -> list[int]:
    """One signed 64-bit key per band (what PostgreSQL's bigint holds)."""
    raw = sig.astype("<u4").tobytes()
    width = ROWS * 4
    return [
        int.from_bytes(hashlib.blake2b(raw[i * width:(i + 1) * width], digest_size=8).digest(), "little", signed=True)
        for i in range(BANDS)
    ]


def candidate_probability(similarity: float) -> float:
    """P(a pair of this Jaccard similarity shares a band key): the curve in the module docstring."""
    return 1.0 - (1.0 - similarity**ROWS) ** BANDS
