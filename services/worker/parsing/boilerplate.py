"""Page furniture: lines a web page puts around an article that are not its text."""

from __future__ import annotations

import re

from shared.text import normalise_blanks

# One entry per furniture line, written as it appears on the page. Matching is on whole
# lines, ignores case and spacing, and ignores decoration such as "— Advertisement —".
BOILERPLATE_LINES: tuple[str, ...] = (
    "Advertisement",
    "Advertisements",
    "Advertisement - Scroll to continue",
    "Advertisement - Continue reading below",
    "Skip Advertisement",
    "Story continues below advertisement",
    "Article continues below advertisement",
    "Story continues below",
    "Article continues below",
    "Continue reading below",
    "Continue reading the main story",
    "Scroll to continue with content",
    "Sponsored content",
    "Sponsored",
    "Supported by",
)

# Dashes, brackets, bullets and the like around a furniture line.
_DECORATION_RE = re.compile(r"^[\W_]+|[\W_]+$")


def _key(line: str) -> str:
    """The form a line is compared in: blanks normalised, decoration trimmed, case folded."""
    return _DECORATION_RE.sub("", normalise_blanks(line)).casefold()


_BOILERPLATE_KEYS = frozenset(_key(line) for line in BOILERPLATE_LINES)
# Furniture is a short line: a paragraph longer than the longest entry with generous decoration is text,
# and is not run through the regular expressions (most lines of every drop are such paragraphs).
_MAX_FURNITURE_CHARS = 2 * max(map(len, BOILERPLATE_LINES)) + 40


def is_boilerplate(line: str) -> bool:
    """Whether the whole line is page furniture rather than article text."""
    if len(line) > _MAX_FURNITURE_CHARS:
        return False
    key = _key(line)
    return bool(key) and key in _BOILERPLATE_KEYS
