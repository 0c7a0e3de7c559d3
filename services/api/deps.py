"""What the /v1 read routes share: the documented error answers and parameter rules (the runtime and the key
checks are services/api/access.py's)."""

from __future__ import annotations

from typing import Any

from fastapi.security import HTTPBearer
from pydantic import BaseModel

# Declares Bearer auth in the OpenAPI schema (the docs' "Authorize" button); the check itself is the app's
# `caller` dependency, added where the routers are included.
bearer = HTTPBearer(auto_error=False, description="An API key: `newsflow keys create --role reader --name NAME`")
MAX_ID = 2**63 - 1  # PostgreSQL bigint: a larger id cannot exist, and must not reach the driver
# Text parameters: PostgreSQL text cannot hold NUL, so one is a client error, not a server one.
TEXT = r"^[^\x00]*$"


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A request the API cannot answer as asked (a bad cursor, say)"},
    401: {"model": Problem, "description": "No key, or an unknown or revoked one"},
}
