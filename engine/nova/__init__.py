"""The Nova-compatible facade: /v2/<tenant_id>, /v2.1/<tenant_id> and /v3. No business logic: it calls
the same commands as the native API and answers in Nova's bodies, status codes and fault shape."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Mount the facade (filled in by engine.nova's modules)."""
