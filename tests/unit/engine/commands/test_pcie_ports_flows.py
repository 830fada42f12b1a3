"""Spare PCIe root ports of q35 VMs through the commands: what a start sends and keeps, what a stop
clears, and the NIC hot-plug refused by canDo, before the host is called, when none is free."""
from __future__ import annotations

from engine.commands import add_nic, plug_unplug_nic, run_vm, stop_vm
from engine.dao import vms
from engine.devices import pcie_ports
from tests.unit.engine.commands.refusals import refused


def free(sessions, vm_id):
    with sessions() as s:
        return pcie_ports.free(vms.get(s, vm_id))


def start(sessions, hosts, vm, **options):
    return run_vm.execute(sessions, hosts, run_vm.Params(vm.id), **options)


def test_a_q35_start_sends_the_default_spare_ports_and_keeps_the_runs_base(sessions, hosts, fake, host, make_vm,
                                                                          make_nic, db):
    vm = make_vm(machine="q35")
    make_nic(vm, "eth0", network="br0")
    start(sessions, hosts, vm, pcie_ports=3)
    (create,) = fake.sent("VM.create")
    assert create["params"]["pciePorts"] == 3
    assert db.vm(vm.id).pcie_ports_base == 4            # 3 spare + the NIC's
    assert free(sessions, vm.id) == 3
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    assert db.vm(vm.id).pcie_ports_base is None and free(sessions, vm.id) is None


def test_the_vms_own_ports_win_and_a_pc_vm_gets_none(sessions, hosts, fake, host, make_vm, db):
    own = make_vm(machine="q35", boot={"pciePorts": 1})
    pc = make_vm(machine="pc")
    start(sessions, hosts, own, pcie_ports=6)
    start(sessions, hosts, pc, pcie_ports=6)
    sent = {c["vmId"]: c["params"] for c in fake.sent("VM.create")}
    assert sent[own.id]["pciePorts"] == 1 and "pciePorts" not in sent[pc.id]
    assert (db.vm(own.id).pcie_ports_base, db.vm(pc.id).pcie_ports_base) == (1, None)


def test_a_nic_hot_plug_takes_the_last_free_port_and_the_next_is_refused_before_the_host(sessions, hosts, fake,
                                                                                          host, make_vm, make_nic,
                                                                                          db):
    vm = make_vm(machine="q35", boot={"pciePorts": 1})
    spare = make_nic(vm, "eth9", network="br0", is_plugged=False)
    start(sessions, hosts, vm)
    add_nic.execute(sessions, hosts, add_nic.Params(vm.id, "eth0", "br0"))
    assert free(sessions, vm.id) == 0
    err = refused(sessions, db, fake, "NIC_ADD", lambda: add_nic.execute(sessions, hosts,
                                                                       add_nic.Params(vm.id, "eth1", "br0")),
                  "NO_FREE_PCIE_PORT")
    assert err.reasons[0].vars == {"vm": vm.name, "free": 0, "wanted": 1}
    refused(sessions, db, fake, "NIC_PLUG", lambda: plug_unplug_nic.execute(
        sessions, hosts, plug_unplug_nic.Params(vm.id, spare.id, True)), "NO_FREE_PCIE_PORT")
    # an unplug gives the port back once the guest has let the NIC go
    (eth0,) = [n for n in fake.domain(vm.id).devices if n.get("type") == "interface"]
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, eth0["alias"][3:], False))
    assert free(sessions, vm.id) == 1
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, spare.id, True))
    assert free(sessions, vm.id) == 0
