"""The engine's request id on the wire: JsonRpcHostClient sends the id bound to its thread as
X-Request-Id, and the agent's own server (in-process, plain HTTP on loopback) puts it on the records it
logs for that call and echoes it. Host calls are counted by verb and outcome (engine.metrics)."""
from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from prometheus_client import REGISTRY

from engine import requestid
from engine.errors import HostCallFailed, HostUnreachable
from engine.jsonrpc_client import JsonRpcHostClient
from vdsm_plugin import requestid as agent_ids, server
from vdsm_plugin.errors import AgentError

agent_log = logging.getLogger("tests.agent_verb")


class Verbs:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def ping(self, ctx: Any) -> dict[str, Any]:
        self.seen.append(agent_ids.current())
        agent_log.info("pinged")
        return {"pong": True}

    def refuse(self, ctx: Any) -> dict[str, Any]:
        raise AgentError("noVM", "no VM with id x", vmId="x")


@pytest.fixture
def verbs() -> Verbs:
    return Verbs()


@pytest.fixture
def agent(verbs: Verbs):
    srv = server.AgentServer(("127.0.0.1", 0), None, {"Host.ping": verbs.ping, "VM.list": verbs.refuse})
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    client = JsonRpcHostClient("agent1", f"http://127.0.0.1:{srv.server_address[1]}/jsonrpc", timeout=5)
    yield client
    client.close()
    srv.shutdown()
    srv.server_close()


def bound(request_id: str):
    class Bound:
        def __enter__(self) -> None:
            self.token = requestid.bind(request_id)

        def __exit__(self, *exc: Any) -> None:
            requestid.unbind(self.token)

    return Bound()


def test_the_bound_id_reaches_the_agent_and_its_log(agent, verbs, caplog):
    caplog.handler.addFilter(agent_ids.Filter())
    with caplog.at_level(logging.INFO, logger="tests.agent_verb"), bound("req-0123"):
        assert agent.call("Host.ping") == {"pong": True}
    assert verbs.seen == ["req-0123"]
    (record,) = [r for r in caplog.records if r.name == "tests.agent_verb"]
    assert record.request_id == "req-0123"


def test_without_a_request_the_agent_gets_no_id(agent, verbs, caplog):
    caplog.handler.addFilter(agent_ids.Filter())
    with caplog.at_level(logging.INFO, logger="tests.agent_verb"):
        agent.call("Host.ping")
    assert verbs.seen == [None]
    (record,) = [r for r in caplog.records if r.name == "tests.agent_verb"]
    assert not hasattr(record, "request_id")


def test_each_call_carries_the_id_of_its_own_thread(agent, verbs):
    """The client is shared between threads; a request's id is never sent with another's call."""
    def one(i: int) -> None:
        with bound(f"req-{i}"):
            agent.call("Host.ping")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(verbs.seen) == sorted(f"req-{i}" for i in range(8))


def count(verb: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("plugboard_host_call_seconds_count", {"verb": verb, "outcome": outcome}) or 0.0


def test_host_calls_are_counted_by_verb_and_outcome(agent):
    ok, failed = count("Host.ping", "ok"), count("VM.list", "failed")
    unreachable = count("Host.ping", "unreachable")
    agent.call("Host.ping")
    with pytest.raises(HostCallFailed):
        agent.call("VM.list")
    dead = JsonRpcHostClient("gone", "http://127.0.0.1:9/jsonrpc", timeout=1, connect_timeout=1)
    with pytest.raises(HostUnreachable):
        dead.call("Host.ping")
    dead.close()
    assert (count("Host.ping", "ok"), count("VM.list", "failed"), count("Host.ping", "unreachable")) == \
        (ok + 1, failed + 1, unreachable + 1)
