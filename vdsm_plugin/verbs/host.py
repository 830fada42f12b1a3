"""Host.ping / Host.getCapabilities / Host.hostdevListByCaps / Host.getEvents."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vdsm_plugin import domxml
from vdsm_plugin.agent import Agent
from vdsm_plugin.verbs import hostdev

SCHEMA_VERSION = "1"


def ping(agent: Agent) -> dict[str, Any]:
    return {"pong": True}


def _bridges() -> list[str]:
    net = Path("/sys/class/net")
    return sorted(p.name for p in net.iterdir() if (p / "bridge").is_dir()) if net.is_dir() else []


def _machine_types(caps_xml: str) -> list[str]:
    caps = domxml.parse(caps_xml)
    names = {m.text for m in caps.iterfind("guest/arch[@name='x86_64']/machine") if m.text}
    names |= {canonical for m in caps.iterfind("guest/arch[@name='x86_64']/machine")
              if (canonical := m.get("canonical"))}
    return sorted(names)


def get_capabilities(agent: Agent) -> dict[str, Any]:
    libvirt_version, qemu_version = agent.hv.versions()
    return {
        "hostname": os.uname().nodename,
        "hostId": agent.host_id,
        "libvirtVersion": libvirt_version,
        "qemuVersion": qemu_version,
        "machineTypes": _machine_types(agent.hv.capabilities_xml()),
        "networks": agent.hv.active_networks(),
        "bridges": _bridges(),
        "hooks": agent.hooks.list_hooks(),
        "whitelists": agent.whitelist.to_dict(),
        "schemaVersion": SCHEMA_VERSION,
    }


def hostdev_list_by_caps(agent: Agent, caps: list[str] | None = None, names: list[str] | None = None) -> dict[str, Any]:
    return {"devices": hostdev.inventory(agent, caps or ["usb_device", "pci"], names)}


def get_events(agent: Agent, after: int = 0, timeout: float = 0, limit: int = 100) -> dict[str, Any]:
    events, last = agent.journal.read(after=after, timeout=timeout, limit=limit, poll=True)
    return {"events": events, "last": last}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "Host.ping": ping,
    "Host.getCapabilities": get_capabilities,
    "Host.hostdevListByCaps": hostdev_list_by_caps,
    "Host.getEvents": get_events,
}
