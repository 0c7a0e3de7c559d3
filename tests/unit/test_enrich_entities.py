"""Entity counting rules without a model: surname merge, country places, name cleaning, countries."""

from __future__ import annotations

from services.enricher.entities import clean_name, count_mentions, entity_countries, surname
from shared.records import EntityMention


def as_dict(mentions: list[EntityMention]) -> dict[tuple[str, str], int]:
    return {(m.text, m.type): m.count for m in mentions}


def test_a_later_surname_counts_as_the_full_name() -> None:
    found = count_mentions([("Mark Esper", "PERSON"), ("Takeshi Iwaya", "PERSON"), ("Esper", "PERSON")])
    assert as_dict(found) == {("Mark Esper", "person"): 2, ("Takeshi Iwaya", "person"): 1}


def test_a_possessive_surname_is_merged_too() -> None:
    found = count_mentions([("Mark Esper", "PERSON"), ("Esper’s", "PERSON"), ("Esper's", "PERSON")])
    assert as_dict(found) == {("Mark Esper", "person"): 3}


def test_a_surname_before_the_full_name_stays_apart() -> None:
    found = count_mentions([("Esper", "PERSON"), ("Mark Esper", "PERSON"), ("Esper", "PERSON")])
    assert as_dict(found) == {("Esper", "person"): 1, ("Mark Esper", "person"): 2}


def test_a_surname_shared_by_two_full_names_is_left_alone() -> None:
    mentions = [("Donald Trump", "PERSON"), ("Melania Trump", "PERSON"), ("Trump", "PERSON")]
    assert as_dict(count_mentions(mentions)) == {
        ("Donald Trump", "person"): 1,
        ("Melania Trump", "person"): 1,
        ("Trump", "person"): 1,
    }


def test_the_surname_rule_is_for_people_only() -> None:
    found = count_mentions([("Mark Esper", "PERSON"), ("Esper", "ORG")])
    assert as_dict(found) == {("Mark Esper", "person"): 1, ("Esper", "organization"): 1}


def test_surname_skips_suffixes() -> None:
    assert surname("Martin Luther King Jr.") == "King"
    assert surname("Kim Jong Un") == "Un"
    assert surname("Madonna") is None
    found = count_mentions([("Martin Luther King Jr.", "PERSON"), ("King", "PERSON")])
    assert as_dict(found) == {("Martin Luther King Jr.", "person"): 2}


def test_the_names_of_one_country_are_one_place() -> None:
    mentions = [("US", "GPE"), ("U.S.", "GPE"), ("the United States", "GPE"), ("The United States", "GPE"),
                ("United States", "GPE"), ("America", "LOC"), ("Tokyo", "GPE")]
    assert as_dict(count_mentions(mentions)) == {("United States", "place"): 6, ("Tokyo", "place"): 1}


def test_names_are_cleaned() -> None:
    assert clean_name("the White House", "organization") == "White House"
    assert clean_name("The  Pentagon’s", "organization") == "Pentagon"
    assert clean_name("The Hague", "place") == "The Hague"
    assert clean_name("The Beatles", "person") == "The Beatles"
    assert clean_name("Kim  Jong\n\nUn", "person") == "Kim Jong Un"
    assert clean_name("“Esper", "person") == "Esper"


def test_other_labels_and_empty_names_are_ignored() -> None:
    mentions = [("Tuesday", "DATE"), ("20", "CARDINAL"), ("Iwaya", "PRODUCT"), ("’s", "PERSON"),
                ("English", "LANGUAGE"), ("“”", "ORG")]
    assert count_mentions(mentions) == []


def test_labels_map_to_types() -> None:
    mentions = [("Pentagon", "ORG"), ("Mount Fuji", "LOC"), ("Golden Gate Bridge", "FAC"), ("Japanese", "NORP"),
                ("World War II", "EVENT"), ("Kim Jong Un", "PERSON")]
    assert {m.type for m in count_mentions(mentions)} == {"organization", "place", "nationality", "event", "person"}


def test_sorted_by_count_then_text() -> None:
    mentions = [("Osaka", "GPE"), ("Japan", "GPE"), ("Tokyo", "GPE"), ("Japan", "GPE"), ("Beijing", "GPE")]
    assert [(m.text, m.count) for m in count_mentions(mentions)] == [
        ("Japan", 2), ("Beijing", 1), ("Osaka", 1), ("Tokyo", 1),
    ]  # fmt: skip


def test_countries_from_places_and_nationalities_only() -> None:
    entities = count_mentions([
        ("Japan", "GPE"), ("North Korean", "NORP"), ("Scotland", "GPE"), ("Tokyo", "GPE"), ("Jordan", "PERSON"),
        ("U.S. Army", "ORG"), ("Republicans", "NORP"), ("Congo", "GPE"), ("Israelis", "NORP"),
    ])  # fmt: skip
    assert entity_countries(entities) == ["GB", "IL", "JP", "KP"]
