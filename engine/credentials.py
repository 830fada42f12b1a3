"""Secrets at rest: passwords hashed with argon2id (argon2-cffi's defaults), API tokens made and
recognised. No database here; engine.dao.accounts stores what this module computes.

A token reads `pb.<id>.<secret>`: `id` is public (12 hex digits; it names the token in listings and
revocation), `secret` is 32 random bytes. Only the token's SHA-256 is stored. A plain hash is enough
for a token, unlike a password: the secret has 256 bits of entropy, so there is no dictionary to try
and nothing a slow hash would add; and it keeps checking a token, done on every request, cheap."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PREFIX = "pb"
TOKEN_RE = re.compile(r"^pb\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})\Z")

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewToken:
    id: str         # public
    token: str      # shown once, never stored
    digest: str     # what is stored


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def new_token() -> NewToken:
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}.{token_id}.{secrets.token_urlsafe(32)}"
    return NewToken(token_id, token, token_digest(token))


def token_id_of(token: str) -> str | None:
    """The public id of a well-formed token, else None (malformed: no lookup is made)."""
    match = TOKEN_RE.match(token)
    return match.group(1) if match else None


def digest_matches(stored: str, token: str) -> bool:
    return hmac.compare_digest(stored, token_digest(token))


# ---- the web UI's login, kept in its signed session cookie ----------------------------------------

LOGIN_USER = "user"
#: How long a login lasts; the browser also forgets the cookie when it closes.
LOGIN_LIFETIME = 12 * 3600


def password_mark(password_hash: str | None) -> str:
    """A short digest of a password hash, kept in the session: a new password ends every login made
    with the old one (the hash itself never leaves the database)."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def new_login(name: str, password_hash: str | None, now: float | None = None) -> dict[str, Any]:
    return {LOGIN_USER: name, "mark": password_mark(password_hash), "at": int(time.time() if now is None else now)}


def login_is_live(claims: Mapping[str, Any], password_hash: str | None, now: float | None = None) -> bool:
    """The login was made with the user's current password, less than LOGIN_LIFETIME ago."""
    at = claims.get("at")
    age = (time.time() if now is None else now) - at if isinstance(at, int) else -1
    return bool(password_hash) and hmac.compare_digest(str(claims.get("mark", "")), password_mark(password_hash)) \
        and 0 <= age < LOGIN_LIFETIME
