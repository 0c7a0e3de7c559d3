"""Country names, aliases and demonyms to ISO 3166-1 alpha-2, and display names."""

from __future__ import annotations

import pycountry
import pytest

from services.enricher.countries import (
    ALIASES,
    DEMONYMS,
    REGIONS,
    country_code,
    demonym_code,
    display_name,
    region_code,
)

NAMES = [
    ("US", "US"), ("U.S.", "US"), ("U.S.A.", "US"), ("USA", "US"), ("America", "US"), ("United States", "US"),
    ("the United States", "US"), ("The United States", "US"), ("United States of America", "US"),
    ("UK", "GB"), ("U.K.", "GB"), ("Britain", "GB"), ("Great Britain", "GB"), ("United Kingdom", "GB"),
    ("Russia", "RU"), ("South Korea", "KR"), ("North Korea", "KP"), ("Iran", "IR"), ("Syria", "SY"),
    ("Vietnam", "VN"), ("Taiwan", "TW"), ("Laos", "LA"), ("Bolivia", "BO"), ("Venezuela", "VE"),
    ("Tanzania", "TZ"), ("Moldova", "MD"), ("Czech Republic", "CZ"), ("Czechia", "CZ"), ("Ivory Coast", "CI"),
    ("Côte d'Ivoire", "CI"), ("Cote d’Ivoire", "CI"), ("Palestine", "PS"), ("Vatican", "VA"),
    ("Macedonia", "MK"), ("North Macedonia", "MK"), ("Turkey", "TR"), ("Türkiye", "TR"), ("Holland", "NL"),
    ("the Netherlands", "NL"), ("Burma", "MM"), ("Myanmar", "MM"), ("DR Congo", "CD"),
    ("Democratic Republic of the Congo", "CD"), ("Republic of the Congo", "CG"), ("China", "CN"),
    ("Japan", "JP"), ("Niger", "NE"), ("Nigeria", "NG"), ("Chad", "TD"), ("The Gambia", "GM"),
    ("Russian Federation", "RU"), ("Korea, Republic of", "KR"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "code"), NAMES)
def test_country_names_and_aliases(name: str, code: str) -> None:
    assert country_code(name) == code


@pytest.mark.parametrize("name", ["japan", "JAPAN", "Japan's", "Japan’s", "  the   Japan ", "the U.S.’s"])
def test_case_blanks_leading_the_and_possessive_do_not_matter(name: str) -> None:
    assert country_code(name) in {"JP", "US"}


def test_niger_is_not_nigeria() -> None:
    assert country_code("Niger") == "NE"
    assert demonym_code("Nigerien") == "NE"
    assert demonym_code("Nigerian") == "NG"


@pytest.mark.parametrize("name", ["Congo", "Georgia", "Korea"])
def test_ambiguous_names_have_no_code(name: str) -> None:
    assert country_code(name) is None


@pytest.mark.parametrize("name", ["Atlantis", "Tokyo", "Europe", "", "IN", "FR", "Scotland", "Osaka"])
def test_unknown_names_and_bare_iso_codes_have_no_code(name: str) -> None:
    assert country_code(name) is None


@pytest.mark.parametrize(
    ("word", "code"),
    [("Japanese", "JP"), ("American", "US"), ("Americans", "US"), ("British", "GB"), ("Chinese", "CN"),
     ("Russian", "RU"), ("Russians", "RU"), ("North Korean", "KP"), ("North Koreans", "KP"),
     ("South Korean", "KR"), ("French", "FR"), ("German", "DE"), ("Germans", "DE"), ("Indian", "IN"),
     ("Israeli", "IL"), ("Israelis", "IL"), ("Palestinian", "PS"), ("Palestinians", "PS"), ("Iranian", "IR"),
     ("Ukrainian", "UA"), ("ukrainians", "UA"), ("Swiss", "CH"), ("Filipinos", "PH"), ("the Dutch", "NL")],
)  # fmt: skip
def test_demonyms(word: str, code: str) -> None:
    assert demonym_code(word) == code


@pytest.mark.parametrize("word", ["Korean", "Congolese", "Republican", "Muslim", "Kurdish", "Japan"])
def test_ambiguous_or_non_national_words_have_no_demonym_code(word: str) -> None:
    assert demonym_code(word) is None


def test_regions_name_their_country_without_being_it() -> None:
    assert region_code("Scotland") == "GB"
    assert region_code("the West Bank") == "PS"
    assert country_code("Scotland") is None


@pytest.mark.parametrize(
    ("code", "name"),
    [("US", "United States"), ("KR", "South Korea"), ("KP", "North Korea"), ("GB", "United Kingdom"),
     ("RU", "Russia"), ("JP", "Japan"), ("IR", "Iran"), ("FR", "France"), ("ZZ", "ZZ")],
)  # fmt: skip
def test_display_names(code: str, name: str) -> None:
    assert display_name(code) == name


def test_every_display_name_reads_back_as_its_code() -> None:
    vetoed = {code for code in (c.alpha_2 for c in pycountry.countries) if ALIASES.get(display_name(code), 1) is None}
    assert vetoed == {"GE"}, "Georgia is vetoed as ambiguous"
    for country in pycountry.countries:
        if country.alpha_2 not in vetoed:
            assert country_code(display_name(country.alpha_2)) == country.alpha_2
            name = display_name(country.alpha_2)
            assert "(" not in name and not name.endswith((" of", " of the")), "no catalogue forms"


def test_tables_name_real_codes() -> None:
    codes = {c.alpha_2 for c in pycountry.countries}
    assert {c for c in ALIASES.values() if c is not None} <= codes
    assert set(DEMONYMS.values()) <= codes
    assert set(REGIONS.values()) <= codes
    assert len(DEMONYMS) >= 120
