"""The OS table and the scheduler's pure choice."""
from __future__ import annotations

import pytest

from engine import osinfo, scheduler
from engine.dao.models import Host

SEED = ("windows_7", "windows_7x64", "windows_2008", "windows_2008x64", "windows_2008r2x64", "rhel_5", "rhel_5x64",
        "rhel_6", "rhel_6x64")


@pytest.mark.parametrize("os_type", SEED + ("rhel_9x64", "debian_12", "ubuntu_24_04", "windows_2022x64"))
def test_nic_hotplug_supported(os_type):
    assert osinfo.supports(os_type, osinfo.NIC_HOTPLUG, "3.1")


@pytest.mark.parametrize("os_type", ["windows_xp", "other", "beos"])
def test_nic_hotplug_unsupported(os_type):
    assert not osinfo.supports(os_type, osinfo.NIC_HOTPLUG, "4.7")


@pytest.mark.parametrize("version,ok", [("3.0", False), ("3.1", True), ("3.10", True), ("4.7", True), ("x", False)])
def test_cluster_version_gate(version, ok):
    assert osinfo.supports("rhel_6x64", osinfo.NIC_HOTPLUG, version) is ok


def test_table():
    assert {o.id for o in osinfo.all()} >= set(SEED)
    assert osinfo.get("debian_12").family == "linux" and osinfo.get("nope") is None
    with pytest.raises(ValueError):
        osinfo.supports("rhel_6", "flying", "4.7")


def host(name, cluster="c1", status="up", bridges=("br0",), networks=()):
    return Host(id=name, name=name, cluster_id=cluster, status=status,
                capabilities={"bridges": list(bridges), "networks": list(networks)})


def test_scheduler_pick():
    hosts = [host("a"), host("b"), host("c", status="unreachable"), host("d", cluster="c2"),
             host("e", bridges=())]
    assert scheduler.pick(hosts, {"a": 2, "b": 1}, cluster_id="c1", networks=["br0"]).name == "b"
    assert scheduler.pick(hosts, {}, cluster_id="c1", networks=["br0"]).name == "a"
    assert scheduler.pick(hosts, {}, cluster_id="c1", networks=["storage"]) is None
    assert scheduler.pick([host("f", bridges=(), networks=("default",))], {}, cluster_id="c1",
                          networks=["default"]).name == "f"


def test_has_networks_accepts_lists_and_maps():
    assert scheduler.has_networks({"bridges": {"br0": {}}, "networks": {}}, ["br0"])
    assert not scheduler.has_networks(None, ["br0"])
    assert scheduler.has_networks(None, [])
