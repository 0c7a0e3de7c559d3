"""The api's key cache (services/api/access.py): a key checked once is trusted for reads for api_key_cache_s, and
not a moment longer; unknown keys are never kept, so a key just created works at once."""

from services.api.access import KeyCache
from shared.keys import Caller, Role
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_trusted_for_the_ttl_and_then_checked_again() -> None:
    clock, who = Clock(), Caller("dashboards", Role.READER)
    cache = KeyCache(5.0, clock)
    assert cache.get("nf_key") is None
    cache.put("nf_key", who)
    clock.now += 4.9
    assert cache.get("nf_key") == who
    assert cache.get("nf_other") is None
    clock.now += 0.1  # the bound a revocation waits at most
    assert cache.get("nf_key") is None


def test_a_ttl_of_zero_checks_every_request() -> None:
    cache = KeyCache(0.0, Clock())
    cache.put("nf_key", Caller("ops", Role.OPERATOR))
    assert cache.get("nf_key") is None


def test_the_api_settings_defaults(monkeypatch) -> None:
    assert (Settings().api_workers, Settings().api_key_cache_s) == (1, 5.0)
    monkeypatch.setenv("NEWSFLOW_API_WORKERS", "2")
    monkeypatch.setenv("NEWSFLOW_API_KEY_CACHE_S", "0")
    assert (Settings().api_workers, Settings().api_key_cache_s) == (2, 0.0)
