"""The shipped example hook before_nic_hotplug/50_nic_mtu_from_property, run by the runner on device
XML."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

import vdsm_plugin.hooks
from vdsm_plugin.errors import AgentError
from vdsm_plugin.hooks import HookRunner

SHIPPED = Path(vdsm_plugin.hooks.__file__).resolve().parent / "examples"
SCRIPT = SHIPPED / "before_nic_hotplug" / "50_nic_mtu_from_property"
NIC = (Path(__file__).parent / "fixtures" / "nic.xml").read_text(encoding="utf-8")


def run(env: dict[str, str], xml: str = NIC):
    return HookRunner(SHIPPED, timeout=20).run("before_nic_hotplug", xml, env={"vmId": "vm-1", **env})


def mtu(xml: str) -> list[str]:
    return etree.fromstring(xml.encode()).xpath("/interface/mtu/@size")


def test_shipped_executable():
    assert SCRIPT.stat().st_mode & 0o777 == 0o755
    assert HookRunner(SHIPPED).list_hooks()["before_nic_hotplug"] == ["50_nic_mtu_from_property"]


def test_without_the_property_nothing_changes():
    result = run({})
    assert result.xml == NIC and result.failures == []


def test_sets_the_mtu():
    result = run({"nic_mtu": "9000"})
    assert mtu(result.xml) == ["9000"]
    assert result.failures == []
    # Everything else of the interface is kept.
    assert etree.fromstring(result.xml.encode()).find("alias").get("name") == "ua-nic"


def test_replaces_an_existing_mtu():
    xml = NIC.replace("<model type='virtio'/>", "<model type='virtio'/><mtu size='1500'/>")
    assert mtu(run({"nic_mtu": "68"}, xml=xml).xml) == ["68"]


@pytest.mark.parametrize("value", ["67", "65536", "abc", "", "9000.5", "-1500", "１５００"])
def test_invalid_value_refuses_the_plug(value):
    with pytest.raises(AgentError) as e:
        run({"nic_mtu": value})
    assert e.value.name == "hookRefused"
    assert "nic_mtu must be an integer from 68 to 65535" in e.value.detail


def test_not_an_interface_is_a_failure_and_the_plug_goes_on():
    xml = "<hostdev mode='subsystem' type='usb'/>"
    result = run({"nic_mtu": "1500"}, xml=xml)
    assert result.xml == xml
    assert result.failures[0]["exitCode"] == 1
    assert "expected an <interface>" in result.failures[0]["stderr"]
