"""The engine on L0 with L1's agent as its host, for the engine's test-host modules: the REST app,
commands and monitor on an SQLite file, the agent over mutual TLS, an admin's token on every request."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.unit.engine.tokens import authenticated, issue_token


def ok(resp, status=200):
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()


def fault(resp, status=409):
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()["fault"]


class Engine:
    def __init__(self, app, api, monitor, agent, token: str) -> None:
        self.app, self.api, self.monitor, self.agent, self.token = app, api, monitor, agent, token
        self.host: dict[str, Any] = {}
        self.timings: list[str] = []

    def devices(self, capability: str) -> list[dict[str, Any]]:
        return ok(self.api.get(f"/api/hosts/{self.host['id']}/devices?capability={capability}"))

    def events(self, vm: dict[str, Any], code: str) -> list[dict[str, Any]]:
        return [e for e in ok(self.api.get(f"/api/events?vm_id={vm['id']}&limit=500")) if e["code"] == code]

    def live(self, vm: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The VM's host devices in its live domain, by alias."""
        return {d["alias"]: d for d in self.agent.call("VM.getDevices", {"vmId": vm["id"]})["devices"]
                if d["type"] == "hostdev"}

    def new_vm(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "os_type": "debian_12", "memory_mb": 64, "vcpus": 1, "machine": "q35", **fields}
        return ok(self.api.post("/api/vms", json=body), 201)

    def timed(self, what: str, start: float) -> None:
        self.timings.append(f"{what}: {time.monotonic() - start:.2f} s")


E = TypeVar("E", bound=Engine)


@contextmanager
def running_engine(testhost, agent, state: Path, cls: type[E], *, pci_aliases: Iterable[Any] = ()) -> Iterator[E]:
    """An engine whose one host is L1 (registered), its monitor running; every VM it made is stopped
    and removed afterwards."""
    from engine import config
    from engine.app import create_app
    from engine.dao import db, pci_aliases as aliases_dao
    from engine.jsonrpc_client import client_factory
    from engine.monitor import Monitor

    url = f"sqlite:///{state}/engine.db"
    tls = testhost.tls
    cfg = config.load(None, env={"PLUGBOARD_STATE_DIR": str(state), "PLUGBOARD_DB_URL": url,
                                 "PLUGBOARD_HOST_TIMEOUT": "90", "PLUGBOARD_TLS_CA": str(tls.ca_file),
                                 "PLUGBOARD_TLS_CERT": str(tls.cert_file), "PLUGBOARD_TLS_KEY": str(tls.key_file)})
    db.upgrade(url)
    engine_ = db.make_engine(url, sqlite_begin="immediate")
    sessions = db.make_sessions(engine_)
    with sessions.begin() as s:
        aliases_dao.replace_all(s, pci_aliases)
    hosts = client_factory(cfg)
    app = create_app({"sessions": sessions, "hosts": hosts, "TESTING": True})
    monitor = Monitor(sessions, hosts, poll_timeout=2, reconcile_interval=3600, retry_delay=0.5)
    token = issue_token(sessions)
    it = cls(app, authenticated(app.test_client(), token), monitor, agent, token)
    it.host = ok(it.api.post("/api/hosts", json={"name": "l1", "url": testhost.url}), 201)
    monitor.start()
    try:
        yield it
    finally:
        monitor.stop()
        for vm in ok(it.api.get("/api/vms")):
            it.api.post(f"/api/vms/{vm['id']}/stop", json={})
            it.api.delete(f"/api/vms/{vm['id']}")
        hosts.close()
        engine_.dispose()
