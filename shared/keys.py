"""API keys (SPEC section 6, "Access"): random 256-bit keys, shown once, stored as their SHA-256 (a key has
too much entropy for guessing to need a slow hash), each with a name and a role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.errors import ConfigurationError
from shared.models import ApiKey

KEY_PREFIX = "nf_"


class Role(StrEnum):
    READER = "reader"  # every read
    OPERATOR = "operator"  # also the status and operator actions (replay)


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return role is Role.READER or self.role is Role.OPERATOR


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str, role: Role) -> str:
    """A new key for `name`; returns the key itself, which is stored nowhere."""
    if session.execute(select(ApiKey.id).where(ApiKey.name == name)).scalar() is not None:
        raise ConfigurationError(f"a key named {name!r} exists; revoke it or choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, role=role.value, key_hash=key_hash(key)))
    session.flush()
    return key


def revoke_key(session: Session, name: str) -> bool:
    done = session.execute(update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                           .values(revoked_at=func.now()))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.name)).scalars())


def caller_of(session: Session, key: str) -> Caller | None:
    """Who a key belongs to, if it is valid and not revoked."""
    row = session.execute(select(ApiKey.name, ApiKey.role).where(
        ApiKey.key_hash == key_hash(key), ApiKey.revoked_at.is_(None))).first()
    return Caller(row.name, Role(row.role)) if row else None
