"""A real agent (JSON-RPC server, libvirt connection, journal, shipped hooks) on the real libvirtd,
started once for this folder. Host devices come from a libvirt test-driver inventory, since this
machine has no USB devices and no IOMMU."""
from __future__ import annotations

import itertools
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from vdsm_plugin import validation

INVENTORY = Path(__file__).parent / "nodedevs.xml"


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.code = error["code"]
        self.data = error.get("data") or {}
        self.error = error


class Rpc:
    """The smallest JSON-RPC client: what a test needs to drive the agent over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._local = threading.local()

    def __call__(self, method: str, **params: Any) -> Any:
        session = getattr(self._local, "s", None) or requests.Session()
        self._local.s = session
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(self._ids)}
        answer = session.post(self.url, json=body, timeout=120).json()
        if "error" in answer:
            raise RpcError(answer["error"])
        # Every answer of the real agent must be what schema/verbs.yaml promises.
        wrong = validation.result_errors(method, answer["result"])
        assert not wrong, f"{method} answered outside its contract: {wrong}"
        return answer["result"]


@pytest.fixture(scope="session")
def agent_home(tmp_path_factory) -> Path:
    """The agent's directory: agent.toml, hooks/ (the shipped hooks), state/."""
    return tmp_path_factory.mktemp("agent")


@pytest.fixture(scope="session")
def agent_hooks(agent_home) -> Path:
    """The agent's hooks directory; a test that adds a script removes it again."""
    return agent_home / "hooks"


@pytest.fixture(scope="session")
def agent_url(agent_home, libvirt_uri, tmp_path_factory):
    """The agent in this process, plain HTTP on loopback (the development flag); kernels from the
    test guest's directory, serial logs anywhere under pytest's base temporary directory.
    tests/integration/vdsm_plugin/test_agent_security.py drives an agent process over mutual TLS."""
    from tests.integration.guest import guest_dir
    from vdsm_plugin import config, server, verbs
    from vdsm_plugin.agent import Agent

    tmp = agent_home
    hooks = tmp / "hooks"
    shutil.copytree(config.SHIPPED_HOOKS, hooks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md"))
    (tmp / "agent.toml").write_text(f"""
[agent]
listen = "127.0.0.1:0"
insecure_dev_http = true
image_dirs = ["{guest_dir()}"]
log_dir = "{tmp_path_factory.getbasetemp()}"
libvirt_uri = "{libvirt_uri}"
nodedev_uri = "test://{INVENTORY}"
hooks_dir = "{hooks}"
state_dir = "{tmp / 'state'}"
unplug_timeout = 3
[whitelist]
usb_white_list_switch = "on"
usb_passthrough_whitelist = [{{vendor = "0x136b", product = "0x0003"}}, {{vendor = "0x0781"}}]
pci_passthrough_whitelist = [{{vendor_id = "8086", product_id = "10c9"}}]
""")
    agent = Agent.start(config.load(tmp / "agent.toml"))
    srv = server.serve(agent, verbs.METHODS)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/jsonrpc"
    srv.shutdown()
    srv.server_close()
    agent.close()


@pytest.fixture(scope="session")
def rpc(agent_url) -> Rpc:
    return Rpc(agent_url)


@pytest.fixture
def new_id():
    return lambda: str(uuid.uuid4())


def destroy_quietly(rpc: Rpc, vm_id: str) -> None:
    try:
        rpc("VM.destroy", vmId=vm_id)
    except RpcError:
        pass
