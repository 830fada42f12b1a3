"""The key that signs the web UI's session cookies: made once, kept in the engine's state dir (0600), so
that logins survive a restart and no key is ever written in the source."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

FILE_NAME = "ui-secret.key"


def load_or_create(state_dir: Path) -> bytes:
    """The key in `state_dir`, made (32 random bytes, mode 0600) when missing. A key file that others
    may read is refused: a reader could sign itself any session. The engine's workers boot together
    and may each make one: a key is written whole to a file of its own, then linked to the key's name
    (which fails if another was there first, whose key is then read), so the name never shows a key
    half written."""
    path = Path(state_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return _read(path)
    key = secrets.token_hex(32).encode()
    fd, made = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=path.parent)     # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        os.link(made, path)
    except FileExistsError:
        return _read(path)
    finally:
        os.unlink(made)
    return key


def _read(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others; chmod 600 it or remove it")
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key (under 32 bytes); remove it to make another")
    return key
