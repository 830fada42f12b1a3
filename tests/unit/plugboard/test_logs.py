"""plugboard.logs: the command's log lines, as text or JSON objects, with the request id of the
engine's request or of the agent's call."""
from __future__ import annotations

import io
import json
import logging

import pytest

from engine import requestid as engine_ids
from plugboard import cli, logs
from vdsm_plugin import requestid as agent_ids


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logs.handler(fmt)
    handler.setStream(out)  # type: ignore[attr-defined]
    logger = logging.getLogger(f"tests.logs.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_json_lines_carry_the_engines_request_id():
    logger, out = capture("json")
    token = engine_ids.bind("req-abc")
    try:
        logger.warning("host %s is slow", "h1")
    finally:
        engine_ids.unbind(token)
    logger.info("no request")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message", "request_id"}
    assert first["level"] == "WARNING" and first["logger"] == "tests.logs.json"
    assert first["message"] == "host h1 is slow" and first["request_id"] == "req-abc"
    assert first["time"].endswith("+00:00")
    assert second["request_id"] is None


def test_json_lines_carry_the_agents_request_id_and_the_traceback():
    logger, out = capture("json")
    token = agent_ids.bind("req-agent")
    try:
        try:
            raise RuntimeError("disk on fire")
        except RuntimeError:
            logger.exception("verb failed\nwith a second line")
    finally:
        agent_ids.unbind(token)
    (line,) = out.getvalue().splitlines()       # one object per line, whatever the message holds
    entry = json.loads(line)
    assert entry["request_id"] == "req-agent" and "disk on fire" in entry["exc_info"]


def test_text_lines_show_the_id_or_a_dash():
    logger, out = capture("text")
    logger.info("before")
    token = engine_ids.bind("req-1")
    try:
        logger.info("during")
    finally:
        engine_ids.unbind(token)
    before, during = out.getvalue().splitlines()
    assert "[-]: before" in before and "[req-1]: during" in during


def test_the_format_comes_from_the_environment():
    assert logs.log_format({}) == "text"
    assert logs.log_format({"PLUGBOARD_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="PLUGBOARD_LOG_FORMAT"):
        logs.log_format({"PLUGBOARD_LOG_FORMAT": "xml"})


def test_the_command_refuses_an_unknown_format(monkeypatch, capsys):
    monkeypatch.setenv("PLUGBOARD_LOG_FORMAT", "xml")
    assert cli.main(["down"]) == 2      # refused before the command runs
    assert "PLUGBOARD_LOG_FORMAT" in capsys.readouterr().err


def test_a_caller_that_configured_logging_keeps_its_handlers():
    """Run in-process (a test runner, an embedding program), the command must not take the root
    logger's handlers over: a handler left on a stream that is later closed breaks later logging."""
    root = logging.getLogger()
    kept = logging.StreamHandler(io.StringIO())
    before = root.handlers[:]
    root.addHandler(kept)
    try:
        logs.setup()
        assert root.handlers == [*before, kept]
    finally:
        root.removeHandler(kept)
