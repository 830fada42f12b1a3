"""Contract: every call the engine's commands send validates against schema/verbs.yaml.

The FakeHost here does not check its input, so that this test -- loading the YAML itself with PyYAML
and jsonschema -- is the one that judges what was sent for each verb.
"""
from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.commands import add_host, add_nic, plug_unplug_nic, refresh_host, run_vm, stop_vm, update_nic
from tests.unit.engine.fakehost import FakeHost, FakeHosts

VERBS_YAML = Path(__file__).resolve().parents[4] / "schema" / "verbs.yaml"
PCI = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x0a", "function": "0x0"}


@pytest.fixture(scope="module")
def contract() -> dict:
    return yaml.safe_load(VERBS_YAML.read_text())


def check(contract: dict, verb: str, params: dict) -> None:
    schema = dict(contract["verbs"][verb]["params"], definitions=contract["definitions"])
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(params, schema, cls=jsonschema.Draft7Validator)


def check_nic(contract: dict, nic: dict) -> None:
    jsonschema.validate(nic, {"$ref": "#/definitions/nic", "definitions": contract["definitions"]},
                        cls=jsonschema.Draft7Validator)


def test_everything_sent_matches_the_contract(contract, sessions, make_host, make_vm, make_nic):
    fake = FakeHost("host1", validate=False)
    hosts = FakeHosts(fake)
    add_host.execute(sessions, hosts, add_host.Params("host1", "https://host1:54321/jsonrpc"))
    with sessions.begin() as s:
        from engine.dao import hosts as hosts_dao
        host = hosts_dao.get_by_name(s, "host1")
    refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    vm = make_vm(status="down", machine="q35", graphics="vnc", custom_properties={"sap_agent": "true"},
                 boot={"kernel": "/img/vmlinuz", "initrd": "/img/initrd", "cmdline": "console=ttyS0",
                       "serialLog": "/var/log/vm.log"})
    make_nic(vm, "eth0", network="br0", address=PCI, boot_order=1, spec_params={"vlan": 10, "mtu": 9000},
             custom_properties={"queues": 4})
    make_nic(vm, "eth1", network="ovirtmgmt", model="e1000e", linked=False)
    make_nic(vm, "eth2", network="br0", is_plugged=False)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    out = add_nic.execute(sessions, hosts, add_nic.Params(vm.id, "eth3", "br0", model="rtl8139"))
    update_nic.execute(sessions, hosts, update_nic.Params(vm.id, out.id, linked=False))
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, out.id, False))
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, out.id, True))
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))

    sent_verbs = {verb for verb, _ in fake.calls}
    assert sent_verbs == {"Host.getCapabilities", "Host.getEvents", "Host.hostdevListByCaps", "VM.create",
                          "VM.hotplugNic", "VM.updateNic", "VM.hotunplugNic", "VM.destroy"}
    for verb, params in fake.calls:
        check(contract, verb, params)
    for device in fake.sent("VM.create")[0]["params"]["devices"]:
        check_nic(contract, device)
    for call in fake.sent("VM.hotplugNic"):
        check_nic(contract, call["nic"])
        assert "address" not in call["nic"]
    [create] = fake.sent("VM.create")
    first = create["params"]["devices"][0]
    assert first["address"] == PCI and first["bootOrder"] == 1
    assert first["specParams"] == {"vlan": 10, "mtu": 9000} and first["customProperties"] == {"queues": "4"}


def test_engine_does_not_import_the_agent():
    engine_dir = Path(__file__).resolve().parents[4] / "engine"
    for path in engine_dir.rglob("*.py"):
        text = path.read_text()
        assert "import vdsm_plugin" not in text and "from vdsm_plugin" not in text, path
