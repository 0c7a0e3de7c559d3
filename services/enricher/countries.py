"""Country names, aliases and demonyms to ISO 3166-1 alpha-2 codes, and one display name per code."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import pycountry

# Looked up before pycountry's own names, and by exact key only: pycountry's fuzzy search finds
# Nigeria for "Niger" (pycountry#115). None marks a name that is ambiguous on its own, so no code
# is better than a wrong one: "Congo" is the DR Congo in most news but the Republic of the Congo
# in ISO's short name; "Georgia" is as often the US state as the country; "Korea" is either Korea.
ALIASES: dict[str, str | None] = {
    "US": "US", "U.S.": "US", "U.S": "US", "U.S.A.": "US", "U.S.A": "US", "USA": "US", "America": "US",
    "United States": "US", "United States of America": "US",
    "UK": "GB", "U.K.": "GB", "U.K": "GB", "Britain": "GB", "Great Britain": "GB", "United Kingdom": "GB",
    "Russia": "RU", "Russian Federation": "RU",
    "South Korea": "KR", "Republic of Korea": "KR", "ROK": "KR",
    "North Korea": "KP", "DPRK": "KP", "D.P.R.K.": "KP",
    "China": "CN", "PRC": "CN", "People's Republic of China": "CN", "Mainland China": "CN",
    "Taiwan": "TW", "Republic of China": "TW",
    "Iran": "IR", "Syria": "SY", "Vietnam": "VN", "Viet Nam": "VN", "Laos": "LA",
    "Bolivia": "BO", "Venezuela": "VE", "Tanzania": "TZ", "Moldova": "MD", "Brunei": "BN",
    "Micronesia": "FM", "Cape Verde": "CV", "Swaziland": "SZ", "East Timor": "TL", "Bosnia": "BA",
    "Czech Republic": "CZ", "Czechia": "CZ",
    "Ivory Coast": "CI", "Cote d'Ivoire": "CI",
    "Congo": None, "Korea": None, "Georgia": None,
    "DR Congo": "CD", "D.R. Congo": "CD", "DRC": "CD", "Congo-Kinshasa": "CD",
    "Democratic Republic of Congo": "CD", "Democratic Republic of the Congo": "CD",
    "Republic of the Congo": "CG", "Republic of Congo": "CG", "Congo-Brazzaville": "CG",
    "Republic of Georgia": "GE",
    "Palestine": "PS", "State of Palestine": "PS", "Palestinian territories": "PS",
    "Vatican": "VA", "Vatican City": "VA", "Holy See": "VA",
    "Macedonia": "MK", "North Macedonia": "MK",
    "Turkey": "TR", "Türkiye": "TR",
    "Holland": "NL", "Netherlands": "NL",
    "Burma": "MM", "Myanmar": "MM",
    "UAE": "AE", "U.A.E.": "AE", "Emirates": "AE",
    "Falklands": "FK", "Falkland Islands": "FK", "Macau": "MO", "Cocos Islands": "CC",
    "U.S. Virgin Islands": "VI", "US Virgin Islands": "VI", "British Virgin Islands": "VG",
    "Saint Martin": "MF", "Sint Maarten": "SX",
}  # fmt: skip

# Parts of a country: they add the country to an article's countries but keep their own name.
REGIONS: dict[str, str] = {
    "England": "GB", "Scotland": "GB", "Wales": "GB", "Northern Ireland": "GB",
    "Gaza": "PS", "Gaza Strip": "PS", "West Bank": "PS",
}  # fmt: skip

# Singular forms; plurals ("Americans", "Israelis") are derived. Ambiguous ones are left out:
# "Korean" (North or South), "Congolese" (either Congo), "Georgian" (see ALIASES).
DEMONYMS: dict[str, str] = {
    "Afghan": "AF", "Albanian": "AL", "Algerian": "DZ", "American": "US", "Angolan": "AO", "Argentine": "AR",
    "Argentinian": "AR", "Armenian": "AM", "Australian": "AU", "Austrian": "AT", "Azerbaijani": "AZ",
    "Azeri": "AZ", "Bahamian": "BS", "Bahraini": "BH", "Bangladeshi": "BD", "Belarusian": "BY",
    "Belgian": "BE", "Beninese": "BJ", "Bhutanese": "BT", "Bolivian": "BO", "Bosnian": "BA",
    "Brazilian": "BR", "British": "GB", "Briton": "GB", "Brit": "GB", "Bulgarian": "BG", "Burkinabe": "BF",
    "Burmese": "MM", "Burundian": "BI", "Cambodian": "KH", "Cameroonian": "CM", "Canadian": "CA",
    "Chadian": "TD", "Chilean": "CL", "Chinese": "CN", "Colombian": "CO", "Costa Rican": "CR",
    "Croatian": "HR", "Croat": "HR", "Cuban": "CU", "Cypriot": "CY", "Czech": "CZ", "Danish": "DK",
    "Dane": "DK", "Dominican": "DO", "Dutch": "NL", "Ecuadorian": "EC", "Egyptian": "EG", "Emirati": "AE",
    "English": "GB", "Eritrean": "ER", "Estonian": "EE", "Ethiopian": "ET", "Fijian": "FJ", "Filipino": "PH",
    "Filipina": "PH", "Finnish": "FI", "Finn": "FI", "French": "FR", "Gabonese": "GA", "Gambian": "GM",
    "German": "DE", "Ghanaian": "GH", "Greek": "GR", "Guatemalan": "GT", "Guinean": "GN", "Haitian": "HT",
    "Honduran": "HN", "Hong Konger": "HK", "Hungarian": "HU", "Icelandic": "IS", "Icelander": "IS",
    "Indian": "IN", "Indonesian": "ID", "Iranian": "IR", "Iraqi": "IQ", "Irish": "IE", "Israeli": "IL",
    "Italian": "IT", "Ivorian": "CI", "Jamaican": "JM", "Japanese": "JP", "Jordanian": "JO", "Kazakh": "KZ",
    "Kazakhstani": "KZ", "Kenyan": "KE", "Kuwaiti": "KW", "Kyrgyz": "KG", "Lao": "LA", "Laotian": "LA",
    "Latvian": "LV", "Lebanese": "LB", "Liberian": "LR", "Libyan": "LY", "Lithuanian": "LT",
    "Luxembourgish": "LU", "Macedonian": "MK", "Malagasy": "MG", "Malawian": "MW", "Malaysian": "MY",
    "Maldivian": "MV", "Malian": "ML", "Maltese": "MT", "Mauritanian": "MR", "Mauritian": "MU",
    "Mexican": "MX", "Moldovan": "MD", "Mongolian": "MN", "Montenegrin": "ME", "Moroccan": "MA",
    "Mozambican": "MZ", "Namibian": "NA", "Nepalese": "NP", "Nepali": "NP", "New Zealander": "NZ",
    "Nicaraguan": "NI", "Nigerian": "NG", "Nigerien": "NE", "North Korean": "KP", "Norwegian": "NO",
    "Omani": "OM", "Pakistani": "PK", "Palestinian": "PS", "Panamanian": "PA", "Paraguayan": "PY",
    "Peruvian": "PE", "Polish": "PL", "Pole": "PL", "Portuguese": "PT", "Puerto Rican": "PR", "Qatari": "QA",
    "Romanian": "RO", "Russian": "RU", "Rwandan": "RW", "Salvadoran": "SV", "Saudi": "SA",
    "Saudi Arabian": "SA", "Scottish": "GB", "Scot": "GB", "Senegalese": "SN", "Serbian": "RS", "Serb": "RS",
    "Sierra Leonean": "SL", "Singaporean": "SG", "Slovak": "SK", "Slovakian": "SK", "Slovenian": "SI",
    "Slovene": "SI", "Somali": "SO", "South African": "ZA", "South Korean": "KR", "South Sudanese": "SS",
    "Spanish": "ES", "Spaniard": "ES", "Sri Lankan": "LK", "Sudanese": "SD", "Swedish": "SE", "Swede": "SE",
    "Swiss": "CH", "Syrian": "SY", "Taiwanese": "TW", "Tajik": "TJ", "Tanzanian": "TZ", "Thai": "TH",
    "Togolese": "TG", "Tunisian": "TN", "Turkish": "TR", "Turk": "TR", "Turkmen": "TM",
    "Ugandan": "UG", "Ukrainian": "UA", "Uruguayan": "UY", "Uzbek": "UZ", "Venezuelan": "VE",
    "Vietnamese": "VN", "Welsh": "GB", "Yemeni": "YE", "Zambian": "ZM", "Zimbabwean": "ZW",
}  # fmt: skip

# The form a reader expects, where ISO's short name reads like a catalogue entry ("Korea, Republic of").
DISPLAY_NAMES: dict[str, str] = {
    "US": "United States", "GB": "United Kingdom", "RU": "Russia", "KR": "South Korea", "KP": "North Korea",
    "IR": "Iran", "SY": "Syria", "VN": "Vietnam", "TW": "Taiwan", "LA": "Laos", "BO": "Bolivia",
    "VE": "Venezuela", "TZ": "Tanzania", "MD": "Moldova", "PS": "Palestine", "VA": "Vatican City",
    "CD": "Democratic Republic of the Congo", "CG": "Republic of the Congo", "FM": "Micronesia",
    "BN": "Brunei", "TR": "Turkey", "CI": "Ivory Coast", "CZ": "Czech Republic", "CV": "Cape Verde",
    "FK": "Falkland Islands", "CC": "Cocos Islands", "VG": "British Virgin Islands",
    "VI": "U.S. Virgin Islands", "MF": "Saint Martin", "SX": "Sint Maarten",
}  # fmt: skip

_POSSESSIVE = re.compile(r"(?:'s|(?<=s)')$")


def name_key(text: str) -> str:
    """The lookup form of a name: accents and case folded, blanks, leading "the" and possessive dropped."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    key = " ".join(folded.replace("’", "'").split()).lower()
    key = _POSSESSIVE.sub("", key)
    return key[4:] if key.startswith("the ") else key


@cache
def _names() -> dict[str, str | None]:
    table: dict[str, str | None] = {}
    for country in pycountry.countries:
        for attribute in ("name", "common_name", "official_name"):
            if name := getattr(country, attribute, None):
                table[name_key(name)] = country.alpha_2
    # The aliases go last so that they win, including the Nones that veto an ambiguous ISO name.
    table.update({name_key(alias): code for alias, code in ALIASES.items()})
    return table


@cache
def _demonyms() -> dict[str, str]:
    table: dict[str, str] = {}
    for word, code in DEMONYMS.items():
        key = name_key(word)
        table[key] = code
        if not key.endswith("s"):
            # "Japaneses" or "Frenchs" never occur, so deriving one plural for every word is harmless.
            table[key + "s"] = code
    table.update({"frenchman": "FR", "frenchmen": "FR", "englishman": "GB", "englishmen": "GB"})
    return table


def country_code(name: str) -> str | None:
    """ISO alpha-2 code of a country named `name` ("the U.S.", "Niger", "Türkiye's"), else None."""
    return _names().get(name_key(name))


@cache
def _regions() -> dict[str, str]:
    return {name_key(region): code for region, code in REGIONS.items()}


def region_code(name: str) -> str | None:
    """ISO alpha-2 code of the country a region named `name` lies in ("Scotland" -> GB), else None."""
    return _regions().get(name_key(name))


def demonym_code(word: str) -> str | None:
    """ISO alpha-2 code of a nationality word ("Japanese", "North Koreans"), else None."""
    return _demonyms().get(name_key(word))


def display_name(code: str) -> str:
    """One common English name for an alpha-2 code ("KR" -> "South Korea"); the code itself if unknown."""
    if code in DISPLAY_NAMES:
        return DISPLAY_NAMES[code]
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    return getattr(country, "common_name", None) or country.name
