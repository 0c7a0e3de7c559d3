"""The drop-file parser: bytes in, a ParsedArticle or a Rejection out."""

from services.worker.parsing.parser import parse_drop

__all__ = ["parse_drop"]
