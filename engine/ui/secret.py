"""The key that signs the web UI's session cookies: made once, kept in the engine's state dir (0600), so
that logins survive a restart and no key is ever written in the source."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "ui-secret.key"


def load_or_create(state_dir: Path) -> bytes:
    """The key in `state_dir`, made (32 random bytes, mode 0600) when missing. A key file that others
    may read is refused: a reader could sign itself any session."""
    path = Path(state_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _read(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others; chmod 600 it or remove it")
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key (under 32 bytes); remove it to make another")
    return key
