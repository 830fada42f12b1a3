"""An in-memory host agent for the engine's unit tier.

`FakeHost` implements the `engine.hostclient.HostClient` Protocol: it keeps one domain per VM with its
devices, assigns guest addresses the way libvirt does (the lowest free PCI slot from 0x03 on bus 0, on
q35 the first free root port from bus 0x01; USB ports in order), keeps user aliases as given, and
answers with the shapes of schema/verbs.yaml. Every call's params are checked against the verb's
schema, as the real agent does, and a bad call answers -32602 -- so every engine test is also a
contract test.

It can be told to:
- fail a verb with an agent code: `host.fail("VM.hotplugNic", 49)` (once; `times=None` for always);
- answer `pending` to unplug verbs: `host.pending_unplug = True`, then `host.finish_unplug(vm_id, alias)`
  (or `failed=True`) fires the journal event the monitor consumes;
- be unreachable: `host.unreachable = True` (every call raises HostUnreachable naming the host).

`FakeHosts` is a `HostClientFactory`: `hosts(host_row)` returns the FakeHost named like the row,
creating it on first use.
"""
from __future__ import annotations

import copy
import threading
import time
import uuid
from typing import Any

from engine.errors import HostCallFailed, HostUnreachable
# The contract's checks live in tests/contract.py (the simulated agents of tests/sim use them too);
# they are importable from here as before.
from tests.contract import (INVALID_PARAMS, METHOD_NOT_FOUND, SCHEMA_DIR, definition_validator,  # noqa: F401
                            error_code, error_message, error_table, is_verb, params_error, validator,
                            verbs_schema)

# The namespace of the fake agents' identities (Host.getCapabilities hostId): one per host name.
FAKE_HOST_IDS = uuid.UUID("6f0b0c8e-3c4d-4c55-9a57-0e4a5f3b1d20")
PCI_FIRST_SLOT = 0x03
PCI_LAST_SLOT = 0x1F


class FakeDomain:
    """One VM as the agent sees it: its status, the params it was created with, its live devices."""

    def __init__(self, vm_id: str, name: str, params: dict[str, Any], status: str) -> None:
        self.vm_id = vm_id
        self.name = name
        self.params = params
        self.status = status
        self.devices: list[dict[str, Any]] = []
        self.pending: set[str] = set()

    def find(self, *, alias: str | None = None, mac: str | None = None) -> dict[str, Any] | None:
        for dev in self.devices:
            if alias is not None and dev.get("alias") == alias:
                return dev
            if alias is None and mac is not None and str(dev.get("macAddr", "")).lower() == mac.lower():
                return dev
        return None

    def aliases(self) -> list[str]:
        return [d["alias"] for d in self.devices if d.get("alias")]

    def used_pci_slots(self) -> set[tuple[str, str]]:
        used = set()
        for dev in self.devices:
            addr = dev.get("address") or {}
            if addr.get("type", "pci") == "pci" and "slot" in addr:
                used.add((_norm_hex(addr.get("bus", "0x00")), _norm_hex(addr["slot"])))
        return used

    def info(self) -> dict[str, Any]:
        return {"vmId": self.vm_id, "name": self.name, "status": self.status, "persistent": True,
                "devices": [copy.deepcopy(d) for d in self.devices]}


def _norm_hex(value: str) -> str:
    return f"0x{int(value, 16):02x}"


class FakeHost:
    """A HostClient that is a whole host agent in memory."""

    def __init__(self, name: str = "host1", *, networks: tuple[str, ...] = ("default",),
                 bridges: tuple[str, ...] = ("ovirtmgmt", "br0"), validate: bool = True) -> None:
        self.name = name
        self.validate = validate
        self.capabilities: dict[str, Any] = {
            "hostname": name,
            "hostId": str(uuid.uuid5(FAKE_HOST_IDS, name)),     # one agent per name
            "libvirtVersion": "9.0.0",
            "qemuVersion": "7.2.0",
            "machineTypes": ["pc", "q35"],
            "networks": list(networks),
            "bridges": list(bridges),
            "hooks": {},
            "whitelists": {"usb": [], "pci": []},
            "schemaVersion": "1",
        }
        self.domains: dict[str, FakeDomain] = {}
        self.hostdevs: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.unreachable = False
        self.unanswered = False     # acts on the call, then the answer is lost (a read timeout)
        self.pending_unplug = False
        self.events: list[dict[str, Any]] = []
        self._seq = 0
        self._failures: dict[str, list[list[Any]]] = {}
        self._lock = threading.RLock()

    # ---- steering ---------------------------------------------------------------------------------

    def fail(self, verb: str, code: int | str, message: str | None = None, *, times: int | None = 1) -> None:
        """Make `verb` answer the agent error `code` (a number or an errors.yaml name), `times` times
        (None: until clear_failures)."""
        num = error_code(code) if isinstance(code, str) else int(code)
        self._failures.setdefault(verb, []).append([num, message or error_message(num), times])

    def clear_failures(self) -> None:
        self._failures.clear()

    def sent(self, verb: str) -> list[dict[str, Any]]:
        """The params of every call of `verb` that reached the host, in order."""
        return [params for v, params in self.calls if v == verb]

    def verbs(self) -> list[str]:
        return [v for v, _ in self.calls]

    def domain(self, vm_id: str) -> FakeDomain:
        return self.domains[vm_id]

    def add_domain(self, vm_id: str, name: str = "vm", status: str = "up") -> FakeDomain:
        """A domain that exists on the host without the engine having created it."""
        dom = FakeDomain(vm_id, name, {"name": name}, status)
        self.domains[vm_id] = dom
        return dom

    def finish_unplug(self, vm_id: str, alias: str, *, failed: bool = False) -> dict[str, Any]:
        """The guest finally answers a pending unplug: the device goes (or stays, when `failed`) and
        the journal gets device_removed (or device_removal_failed)."""
        with self._lock:
            dom = self.domains[vm_id]
            dom.pending.discard(alias)
            if failed:
                return self._event("device_removal_failed", vm_id, alias)
            dev = dom.find(alias=alias)
            if dev is not None:
                dom.devices.remove(dev)
            return self._event("device_removed", vm_id, alias)

    # ---- the HostClient Protocol ------------------------------------------------------------------

    def call(self, verb: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        params = copy.deepcopy(params or {})
        with self._lock:
            if self.unreachable:
                raise HostUnreachable(f"Host {self.name} is unreachable: connection refused", host=self.name)
            self.calls.append((verb, copy.deepcopy(params)))
            handler = getattr(self, "_" + verb.replace(".", "_"), None)
            if handler is None or not is_verb(verb):
                raise self._error(METHOD_NOT_FOUND, f"Method not found: {verb}")
            if self.validate and (problem := params_error(verb, params)) is not None:
                raise self._error(INVALID_PARAMS, problem)
            planned = self._failures.get(verb)
            if planned:
                code, message, times = planned[0]
                if times is not None:
                    planned[0][2] = times - 1
                    if planned[0][2] <= 0:
                        planned.pop(0)
                raise self._error(code, message)
            result = handler(params)
            if self.unanswered:
                raise HostUnreachable(f"Host {self.name} is unreachable: no answer to {verb} in time",
                                      host=self.name, outcome_unknown=True)
            return result

    # ---- helpers ----------------------------------------------------------------------------------

    def _error(self, code: int, message: str) -> HostCallFailed:
        return HostCallFailed(f"Host {self.name} answered error {code}: {message}", host_code=code,
                              host_message=message, host=self.name)

    def _event(self, kind: str, vm_id: str | None, alias: str | None, **data: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"seq": self._seq, "time": time.time(), "kind": kind, "vmId": vm_id, "alias": alias,
                 "data": data}
        self.events.append(event)
        return event

    def _dom(self, vm_id: str, *, running: bool = False) -> FakeDomain:
        dom = self.domains.get(vm_id)
        if dom is None or (running and dom.status not in ("up", "paused")):
            raise self._error(error_code("noVM"), error_message(error_code("noVM")))
        return dom

    def _pci(self, dom: FakeDomain, wanted: dict[str, Any] | None, err: int) -> dict[str, Any]:
        used = dom.used_pci_slots()
        if wanted:
            key = (_norm_hex(wanted.get("bus", "0x00")), _norm_hex(wanted["slot"]))
            if key in used:
                raise self._error(err, f"Attempted double use of PCI Address {key[0]}:{key[1]}")
            addr = {"type": "pci", **{k: v for k, v in wanted.items() if k != "type"}}
            return addr
        if dom.params.get("machine") == "q35":     # libvirt puts a PCIe device on the first free root port
            buses = {bus for bus, _ in used}
            for bus in range(1, PCI_LAST_SLOT + 1):
                if f"0x{bus:02x}" not in buses:
                    return {"type": "pci", "domain": "0x0000", "bus": f"0x{bus:02x}", "slot": "0x00",
                            "function": "0x0"}
        for slot in range(PCI_FIRST_SLOT, PCI_LAST_SLOT + 1):
            if ("0x00", f"0x{slot:02x}") not in used:
                return {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": f"0x{slot:02x}",
                        "function": "0x0"}
        raise self._error(err, "No more available PCI slots")

    def _usb(self, dom: FakeDomain, wanted: dict[str, Any] | None) -> dict[str, Any]:
        if wanted:
            return dict(wanted)
        ports = {(d.get("address") or {}).get("port") for d in dom.devices
                 if (d.get("address") or {}).get("type") == "usb"}
        port = 1
        while str(port) in ports:
            port += 1
        return {"type": "usb", "bus": "0", "port": str(port)}

    def _place(self, dom: FakeDomain, spec: dict[str, Any], err: int) -> dict[str, Any]:
        """A device as libvirt reports it after attaching `spec`: the alias kept, an address assigned."""
        alias = spec.get("alias")
        if alias and dom.find(alias=alias) is not None:
            raise self._error(err, f"a device with alias {alias} already exists")
        dev = copy.deepcopy(spec)
        kind = (dev.get("type"), dev.get("device"))
        usb = kind in (("hostdev", "usb"),) or dev.get("type") == "redirdev"
        dev["address"] = self._usb(dom, dev.get("address")) if usb else self._pci(dom, dev.get("address"), err)
        if dev.get("type") == "interface":
            dev.setdefault("linkActive", True)
        dom.devices.append(dev)
        return dev

    def _reported(self, dev: dict[str, Any]) -> dict[str, Any]:
        keep = ("type", "device", "alias", "address", "macAddr", "network", "nicModel", "model", "index",
                "linkActive", "source")
        return {k: copy.deepcopy(dev[k]) for k in keep if k in dev}

    def _unplug(self, params: dict[str, Any], key: str, err: int) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        ref = params[key]
        dev = dom.find(alias=ref.get("alias"), mac=ref.get("macAddr"))
        if dev is None:
            raise self._error(error_code("deviceNotFound"), error_message(error_code("deviceNotFound")))
        alias = dev["alias"]
        if alias in dom.pending:
            raise self._error(error_code("operationInFlight"), error_message(error_code("operationInFlight")))
        if self.pending_unplug:
            dom.pending.add(alias)
            return {"status": "pending", "alias": alias}
        dom.devices.remove(dev)
        self._event("device_removed", dom.vm_id, alias)
        return {"status": "removed", "alias": alias, "elapsed": 0.01}

    # ---- verbs ------------------------------------------------------------------------------------

    def _Host_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    def _Host_getCapabilities(self, params: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.capabilities)

    def _Host_hostdevListByCaps(self, params: dict[str, Any]) -> dict[str, Any]:
        caps, names = params.get("caps"), params.get("names")
        return {"devices": [copy.deepcopy(d) for d in self.hostdevs if (not caps or d["capability"] in caps)
                            and (names is None or d["name"] in names)]}

    def _Host_getEvents(self, params: dict[str, Any]) -> dict[str, Any]:
        after = params.get("after", 0)
        limit = params.get("limit", 1000)
        return {"events": [copy.deepcopy(e) for e in self.events if e["seq"] > after][:limit], "last": self._seq}

    def _build(self, params: dict[str, Any], status: str) -> dict[str, Any]:
        vm_id = params["vmId"]
        old = self.domains.get(vm_id)
        if old is not None and (old.status in ("up", "paused") or status == "down"):
            raise self._error(error_code("exist"), error_message(error_code("exist")))
        vm = params["params"]
        dom = FakeDomain(vm_id, vm["name"], vm, status)
        dom.devices.append({"type": "controller", "device": "pci", "alias": "pci.0", "address": None,
                            "model": "pci-root", "index": 0})
        for spec in vm.get("devices", []):
            self._place(dom, spec, error_code("createErr"))
        self.domains[vm_id] = dom
        info = dom.info()
        if status == "up":
            # startedVmInfo: eventSeq is the journal position of this start
            info["eventSeq"] = self._event("vm_lifecycle", vm_id, None, event="started")["seq"]
        return info

    def _VM_create(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._build(params, "up")

    def _VM_define(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._build(params, "down")

    def _VM_start(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"])
        dom.status = "up"
        seq = self._event("vm_lifecycle", dom.vm_id, None, event="started")["seq"]
        return {**dom.info(), "eventSeq": seq}

    def _VM_destroy(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"])
        if params.get("undefine", True):
            del self.domains[dom.vm_id]
        else:
            dom.status = "down"
            dom.pending.clear()
        self._event("vm_lifecycle", dom.vm_id, None, event="stopped")
        return {"vmId": dom.vm_id, "status": "down"}

    def _VM_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"vms": [d.info() for d in self.domains.values()]}

    def _VM_getDevices(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._dom(params["vmId"]).info()

    def _VM_hotplugNic(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        return self._reported(self._place(dom, params["nic"], error_code("hotplugNic")))

    def _VM_hotunplugNic(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._unplug(params, "nic", error_code("hotunplugNic"))

    def _VM_updateNic(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        dev = dom.find(alias=params["nic"]["alias"])
        if dev is None or dev.get("type") != "interface":
            raise self._error(error_code("deviceNotFound"), error_message(error_code("deviceNotFound")))
        dev["linkActive"] = params["nic"]["linkActive"]
        return self._reported(dev)

    def _VM_hotplugHostdev(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        return self._reported(self._place(dom, params["hostdev"], error_code("hostdevPlugFailed")))

    def _VM_hotunplugHostdev(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._unplug(params, "hostdev", error_code("hostdevUnplugFailed"))

    def _VM_hotplugRedirdev(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        return self._reported(self._place(dom, params["redirdev"], error_code("redirdevPlugFailed")))

    def _VM_hotunplugRedirdev(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._unplug(params, "redirdev", error_code("redirdevUnplugFailed"))

    def _VM_addController(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        spec = params["controller"]
        for dev in dom.devices:
            if dev.get("type") == "controller" and dev.get("device") == spec["device"] \
                    and dev.get("index") == spec["index"]:
                raise self._error(error_code("controllerIndexInUse"),
                                  error_message(error_code("controllerIndexInUse")))
        return self._reported(self._place(dom, spec, error_code("controllerPlugFailed")))

    def _VM_removeController(self, params: dict[str, Any]) -> dict[str, Any]:
        dom = self._dom(params["vmId"], running=True)
        dev = dom.find(alias=params["controller"]["alias"])
        if dev is None:
            raise self._error(error_code("deviceNotFound"), error_message(error_code("deviceNotFound")))
        dom.devices.remove(dev)
        return {"status": "removed", "alias": dev["alias"]}


class FakeHosts:
    """A HostClientFactory over FakeHosts, by host name (created on first use)."""

    def __init__(self, *hosts: FakeHost) -> None:
        self.by_name: dict[str, FakeHost] = {h.name: h for h in hosts}

    def add(self, host: FakeHost) -> FakeHost:
        self.by_name[host.name] = host
        return host

    def __getitem__(self, name: str) -> FakeHost:
        if name not in self.by_name:
            self.by_name[name] = FakeHost(name)
        return self.by_name[name]

    def __call__(self, host: Any) -> FakeHost:
        return self[host.name]
