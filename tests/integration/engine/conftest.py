"""The engine (REST app, commands, monitor, real database) against a real agent process on the real
libvirtd. The database is a fresh SQLite file, or PLUGBOARD_TEST_DB_URL's PostgreSQL when set."""
from __future__ import annotations


import pytest

from tests import testdb
from tests.integration.agentproc import AgentProcess
from tests.integration.engine.rest import ok
from tests.unit.engine.tokens import authenticated, issue_token


#: Figures a module of this directory prints at the end of the run, by title (the fault suite's timings).
SUMMARY: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    for title, lines in SUMMARY.items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def agent_proc(tmp_path_factory, libvirt_uri):
    agent = AgentProcess(tmp_path_factory.mktemp("agent"), libvirt_uri)
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def engine_parts(tmp_path_factory):
    from engine import config
    from engine.dao import db
    from engine.jsonrpc_client import client_factory
    from engine.monitor import Monitor
    from engine.app import create_app

    state = tmp_path_factory.mktemp("engine")
    url = testdb.url() or f"sqlite:///{state}/engine.db"
    cfg = config.load(None, env={"PLUGBOARD_STATE_DIR": str(state), "PLUGBOARD_DB_URL": url,
                                 "PLUGBOARD_HOST_TIMEOUT": "20"})
    if not db.is_sqlite(url):
        db.drop_all(db.make_engine(url))
    db.upgrade(url)
    engine_ = db.make_engine(url, sqlite_begin="immediate")
    sessions = db.make_sessions(engine_)
    hosts = client_factory(cfg)
    app = create_app({"sessions": sessions, "hosts": hosts, "TESTING": True})
    monitor = Monitor.from_config(sessions, hosts, cfg)
    # Every request acts as an administrator; engine_parts["client_for"]() makes another such client.
    token = issue_token(sessions)
    yield {"app": app, "client": authenticated(app.test_client(), token), "sessions": sessions, "hosts": hosts,
           "monitor": monitor, "config": cfg, "client_for": lambda: authenticated(app.test_client(), token)}
    hosts.close()
    engine_.dispose()


@pytest.fixture(scope="module")
def api(engine_parts):
    return engine_parts["client"]


@pytest.fixture(scope="module")
def host(api, agent_proc, bridge):
    return ok(api.post("/api/hosts", json={"name": "lab", "url": agent_proc.url}), 201)
