from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.errors import Conflict
from engine.macpool import MacPool, format_mac, parse_mac, parse_ranges


def test_defaults_and_size():
    pool = MacPool()
    assert pool.size == 65536
    assert "56:6f:1a:00:12:34" in pool and "56:6f:1a:01:00:00" not in pool and "junk" not in pool


@pytest.mark.parametrize("text", ["56:6f:1a:00:00", "56:6f:1a:00:00:0g", "566f1a000000", "", "56:6f:1a:00:00:00:00"])
def test_malformed_mac_is_refused(text):
    with pytest.raises(ValueError):
        parse_mac(text)


def test_parse_and_format_round_trip():
    assert format_mac(parse_mac("56:6F:1A:00:00:0A")) == "56:6f:1a:00:00:0a"
    assert parse_mac("56-6f-1a-00-00-0a") == 0x566F1A00000A


@pytest.mark.parametrize("start,end,problem", [
    ("56:6f:1a:00:00:10", "56:6f:1a:00:00:01", "empty"),
    ("01:00:5e:00:00:00", "01:00:5e:00:00:ff", "unicast"),
    ("56:00:00:00:00:00", "57:00:00:00:00:00", "first octet"),
    ("56:00:00:00:00:00", "56:ff:ff:ff:ff:ff", "too large"),
])
def test_bad_ranges_are_refused(start, end, problem):
    with pytest.raises(ValueError, match=problem):
        MacPool(start, end)


def test_several_ranges_and_overlap():
    pool = MacPool.from_ranges("00:1a:4a:16:02:00-00:1a:4a:16:02:01, 00:1a:4a:16:01:51-00:1a:4a:16:01:52")
    assert list(pool.addresses()) == ["00:1a:4a:16:01:51", "00:1a:4a:16:01:52",
                                      "00:1a:4a:16:02:00", "00:1a:4a:16:02:01"]
    with pytest.raises(ValueError, match="overlap"):
        parse_ranges("00:1a:4a:16:01:00-00:1a:4a:16:01:10,00:1a:4a:16:01:10-00:1a:4a:16:01:20")
    with pytest.raises(ValueError):
        parse_ranges("00:1a:4a:16:01:00")
    with pytest.raises(ValueError):
        parse_ranges(" , ")


def test_from_config():
    cfg = SimpleNamespace(mac_pool_start="02:00:00:00:00:10", mac_pool_end="02:00:00:00:00:1f")
    assert MacPool.from_config(cfg).size == 16


def test_allocate_first_free_then_exhaustion(sessions, make_vm, make_nic):
    pool = MacPool("56:6f:1a:00:00:00", "56:6f:1a:00:00:02")
    vm = make_vm()
    with sessions() as s:
        assert pool.allocate(s) == "56:6f:1a:00:00:00"
    make_nic(vm, mac="56:6f:1a:00:00:00")
    make_nic(vm, mac="56:6f:1a:00:00:02", is_plugged=False)      # unplugged NICs hold their MAC too
    make_nic(vm, mac="02:00:00:00:00:01")                         # outside the pool: ignored
    with sessions() as s:
        assert pool.allocate(s) == "56:6f:1a:00:00:01"
        with pytest.raises(Conflict) as info:
            pool.allocate(s, exclude=["56:6f:1a:00:00:01"])
    assert info.value.code == "MAC_POOL_EXHAUSTED" and info.value.status == 409


def test_allocate_sees_pending_nics_of_the_same_transaction(sessions, make_vm):
    from engine.dao import nics

    pool = MacPool("56:6f:1a:00:00:00", "56:6f:1a:00:00:ff")
    vm = make_vm()
    with sessions.begin() as s:
        first = pool.allocate(s)
        nics.add(s, vm.id, name="nic1", mac=first, network="ovirtmgmt")
        assert pool.allocate(s) == "56:6f:1a:00:00:01"
