"""Bytes to text: pick the encoding, repair mojibake, or reject the bytes as not text."""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

import ftfy

from shared.records import DropReason, Rejection

# A text file may hold a stray control code or two; above this share it is binary data.
MAX_CONTROL_SHARE = 0.05

# Without a BOM, ASCII-heavy UTF-16 has a NUL in most high bytes; news text rarely strays
# outside Latin-1 for more than a few quotes and dashes, so a clear majority is a safe bar.
_BOMLESS_UTF16_NUL_SHARE = 0.6
# Below this the NUL pattern says nothing.
_BOMLESS_UTF16_MIN_BYTES = 4

# C0 and C1 controls except tab, line feed, vertical tab, form feed and carriage return,
# which plain-text editors do write.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


class DecodedText(NamedTuple):
    """A drop's text and the name of the decoding that produced it."""

    text: str
    encoding: str


def decode_drop(data: bytes) -> DecodedText | Rejection:
    """Decode a drop's bytes to text with mojibake repaired, or reject them as not text."""
    utf16_codec = _utf16_codec(data)
    if utf16_codec is None and b"\x00" in data:
        return _not_text("file contains NUL bytes, so it is binary data, not text")
    decoded = _decode_utf16(data, utf16_codec) if utf16_codec else _decode_8bit(data)
    if isinstance(decoded, Rejection):
        return decoded
    share = control_share(decoded.text)
    if share > MAX_CONTROL_SHARE:
        return _not_text(f"file is {share:.0%} control codes, so it is binary data, not text")
    return DecodedText(fix_mojibake(decoded.text), decoded.encoding)


def control_share(text: str) -> float:
    """Share of the characters of text that are control codes no text file should hold."""
    if not text:
        return 0.0
    return len(_CONTROL_RE.findall(text)) / len(text)


def fix_mojibake(text: str) -> str:
    """Repair UTF-8 that was once decoded as a single-byte codec (mojibake such as `â€™`)."""
    # Line by line, as ftfy.fix_text does, so one garbled line cannot sway the verdict on the
    # clean ones. fix_encoding runs only the encoding repairs: quotes stay curled, width and
    # normal form stay as they are. An ASCII line cannot hold mojibake, and most lines are ASCII.
    if text.isascii():
        return text
    return "".join(line if line.isascii() else ftfy.fix_encoding(line) for line in text.splitlines(keepends=True))


def _utf16_codec(data: bytes) -> str | None:
    """The codec to read data as UTF-16 with, or None when it is not UTF-16."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(data) < _BOMLESS_UTF16_MIN_BYTES or len(data) % 2:
        return None
    half = len(data) // 2
    low_nuls, high_nuls = data[0::2].count(0), data[1::2].count(0)
    if low_nuls == 0 and high_nuls >= _BOMLESS_UTF16_NUL_SHARE * half:
        return "utf-16-le"
    if high_nuls == 0 and low_nuls >= _BOMLESS_UTF16_NUL_SHARE * half:
        return "utf-16-be"
    return None


def _decode_utf16(data: bytes, codec: str) -> DecodedText | Rejection:
    """Decode UTF-16 bytes; the 'utf-16' codec reads and drops the BOM itself."""
    try:
        return DecodedText(data.decode(codec), "utf-16")
    except UnicodeDecodeError:
        return _not_text("file looks like UTF-16 text but its bytes are not valid UTF-16")


def _decode_8bit(data: bytes) -> DecodedText:
    """Decode bytes as strict UTF-8, else cp1252, else latin-1 (which accepts any byte)."""
    has_bom = data.startswith(codecs.BOM_UTF8)
    # A UTF-8 BOM is never text, even when the bytes after it turn out not to be UTF-8.
    body = data[len(codecs.BOM_UTF8) :] if has_bom else data
    try:
        return DecodedText(body.decode("utf-8"), "utf-8-sig" if has_bom else "utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return DecodedText(body.decode("cp1252"), "cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte, so this cannot fail.
        return DecodedText(body.decode("latin-1"), "latin-1")


def _not_text(detail: str) -> Rejection:
    """A not_text rejection with a plain-English detail."""
    return Rejection(reason=DropReason.NOT_TEXT, detail=detail)
