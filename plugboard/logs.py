"""Logging of the `plugboard` command's processes (engine and agent alike): one handler on stderr,
records carrying the request id of the engine's request or of the agent's call, as text or, with
PLUGBOARD_LOG_FORMAT=json, one JSON object per line (time, level, logger, message, request_id, and
exc_info when there is one)."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone

FORMAT_ENV = "PLUGBOARD_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_format(env: Mapping[str, str] = os.environ) -> str:
    fmt = (env.get(FORMAT_ENV) or "text").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def handler(fmt: str) -> logging.Handler:
    """A stderr handler in format `fmt` whose records carry the request id (engine's or agent's)."""
    from engine import requestid as engine_ids          # stdlib only: cheap on a host with the agent alone
    from vdsm_plugin import requestid as agent_ids

    out = logging.StreamHandler()
    out.addFilter(engine_ids.Filter())
    out.addFilter(agent_ids.Filter())
    out.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT, defaults={"request_id": "-"}))
    return out


def setup(*, verbose: bool = False, env: Mapping[str, str] = os.environ) -> None:
    """The process's logging, unless something already configured it (basicConfig's rule: a caller
    that runs the command in-process, such as a test runner, keeps its own handlers)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler(log_format(env))])
