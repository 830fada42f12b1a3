"""Small helpers of the engine's integration tests: REST answers checked, VMs and NICs made through the
API, and the agent's view of a VM's live devices."""
from __future__ import annotations


def ok(resp, status=200):
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()


def fault(resp, status):
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()["fault"]


def new_vm(api, name, guest=None, serial=None, os_type="debian_12", **fields):
    body = {"name": name, "os_type": os_type, "memory_mb": 256 if guest else 64, "vcpus": 1, "machine": "pc",
            **fields}
    if guest:
        body["boot"] = {"kernel": str(guest.kernel), "initrd": str(guest.initrd),
                        "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init", "serialLog": str(serial)}
    return ok(api.post("/api/vms", json=body), 201)


def add_nic(api, vm, name, active=True):
    return ok(api.post(f"/api/vms/{vm['id']}/nics", json={"name": name, "network": "pbbr0", "active": active}), 201)


def live_aliases(agent_proc, vm_id):
    from tests.integration.vdsm_plugin.conftest import Rpc
    return {d["alias"] for d in Rpc(agent_proc.url)("VM.getDevices", vmId=vm_id)["devices"]}


def live_devices(agent_proc, vm_id):
    from tests.integration.vdsm_plugin.conftest import Rpc
    return Rpc(agent_proc.url)("VM.getDevices", vmId=vm_id)["devices"]


def defined_vms(libvirt_uri):
    """UUIDs of every domain libvirt has, running or only defined."""
    import libvirt
    conn = libvirt.open(libvirt_uri)
    try:
        return {d.UUIDString() for d in conn.listAllDomains()}
    finally:
        conn.close()


class Crash(BaseException):
    """Stands for the engine process dying: nothing after it runs, no handler catches it."""


def die_after_host_call(engine_parts, vm_id: str, nic_id: str, *, plug: bool) -> None:
    """Runs the NIC's activate (or deactivate) command with a host client that dies right after the
    host answered: the command's first transaction is committed, its last never runs."""
    import pytest
    from engine.commands import plug_unplug_nic

    real = engine_parts["hosts"]

    class DyingAfterCall:
        def __init__(self, client):
            self.client, self.name = client, client.name

        def call(self, verb, params=None, **kw):
            self.client.call(verb, params, **kw)
            raise Crash()

    with pytest.raises(Crash):
        plug_unplug_nic.execute(engine_parts["sessions"], lambda h: DyingAfterCall(real(h)),
                                plug_unplug_nic.Params(vm_id=vm_id, nic_id=nic_id, plug=plug))
