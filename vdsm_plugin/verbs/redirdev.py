"""VM.hotplugRedirdev / VM.hotunplugRedirdev: SPICE (spicevmc) and TCP USB redirection."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vdsm_plugin.agent import Agent
from vdsm_plugin.domxml import redirdev as redirdev_xml
from vdsm_plugin.verbs import devices


def hotplug_redirdev(agent: Agent, vmId: str, redirdev: dict[str, Any]) -> dict[str, Any]:
    return devices.plug(agent, vmId, redirdev, hook_kind="device", error="redirdevPlugFailed")


def hotunplug_redirdev(agent: Agent, vmId: str, redirdev: dict[str, Any]) -> dict[str, Any]:
    return devices.unplug(agent, vmId, redirdev, kind=redirdev_xml.TAG, hook_kind="device",
                          error="redirdevUnplugFailed")


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.hotplugRedirdev": hotplug_redirdev,
    "VM.hotunplugRedirdev": hotunplug_redirdev,
}
