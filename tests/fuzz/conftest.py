"""The fuzzers' fixtures: the engine's database fixtures of the unit tier (SQLite per test, or the
PostgreSQL named by PLUGBOARD_TEST_DB_URL), shared rather than copied."""
from __future__ import annotations

from tests.unit.engine.conftest import db_url, engine_, sessions  # noqa: F401 - pytest fixtures
