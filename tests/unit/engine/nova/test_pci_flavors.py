"""The flavor extra spec pci_passthrough:alias (seed 003) through both fronts: the native
/api/flavors and the facade's os-extra_specs, and seed 003's own commands through novaclient's shell
functions -- `nova flavor-key gzm set "pci_passthrough:alias"="a1:2"` then `nova flavor-show gzm`
showing it in extra_specs. An alias the configuration does not name is refused naming it."""
from __future__ import annotations

import shlex

import pytest
from novaclient import exceptions as nova_exc
from novaclient import shell as nova_cli

from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.nova.conftest import V21, nova_fault
from tests.unit.engine.nova.test_novaclient import base_url, nova  # noqa: F401  (fixtures)
from tests.unit.engine.pci import ALIASES, configure

KEY = "pci_passthrough:alias"


@pytest.fixture(autouse=True)
def aliases(sessions):
    configure(sessions, *ALIASES)


# ---- native API ----------------------------------------------------------------------------------

def test_native_create_and_change_a_flavors_pci_request(client):
    r = client.post("/api/flavors", json={"name": "m1.pci", "memory_mb": 512, "vcpus": 1,
                                          "extra_specs": {KEY: "a1:2"}})
    assert r.status_code == 201, r.get_json()
    flavor = r.get_json()
    assert flavor["extra_specs"] == {KEY: "a1:2"}
    r = client.patch(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {KEY: "a1:2,b1:1"}})
    assert r.status_code == 200 and r.get_json()["extra_specs"] == {KEY: "a1:2,b1:1"}
    r = client.put(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {KEY: "c1"}})
    assert r.status_code == 200 and r.get_json()["extra_specs"] == {KEY: "c1"}
    r = client.patch(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {KEY: None}})
    assert r.status_code == 200 and r.get_json()["extra_specs"] == {}


def test_native_unknown_alias_is_a_400_naming_it(client):
    r = client.post("/api/flavors", json={"name": "m1.gpu", "memory_mb": 512, "vcpus": 1,
                                          "extra_specs": {KEY: "a1:1,gpu:1"}})
    fault = fault_of(r)
    assert r.status_code == 400 and reason_codes(fault) == ["PCI_ALIAS_UNKNOWN"]
    assert fault["reasons"][0]["vars"] == {"alias": "gpu", "known": ["a1", "b1", "c1"]}
    assert client.get("/api/flavors").get_json() == []


@pytest.mark.parametrize("value", ["a1:0", "a1:17", "a1:1,a1:1", "a1:2:", "", "a1:9,b1:8"])
def test_native_bad_request_syntax_is_a_400(client, value):
    r = client.post("/api/flavors", json={"name": "m1.pci", "memory_mb": 512, "vcpus": 1, "extra_specs": {KEY: value}})
    fault = fault_of(r)
    assert r.status_code == 400 and reason_codes(fault) == ["SPEC_VALUE_INVALID"]
    assert fault["reasons"][0]["vars"]["key"] == KEY


# ---- the facade's os-extra_specs -------------------------------------------------------------------

def test_facade_extra_specs_set_show_update_and_delete_the_request(client, nova_flavor):
    flavor = nova_flavor("gzm")
    specs = f"{V21}/flavors/{flavor['id']}/os-extra_specs"
    r = client.post(specs, json={"extra_specs": {KEY: "a1:2"}})
    assert (r.status_code, r.get_json()) == (200, {"extra_specs": {KEY: "a1:2"}})
    assert client.get(specs).get_json() == {"extra_specs": {KEY: "a1:2"}}
    assert client.get(f"{specs}/{KEY}").get_json() == {KEY: "a1:2"}
    r = client.put(f"{specs}/{KEY}", json={KEY: "a1:2,b1:1"})
    assert (r.status_code, r.get_json()) == (200, {KEY: "a1:2,b1:1"})
    assert client.delete(f"{specs}/{KEY}").status_code == 200
    assert client.get(specs).get_json() == {"extra_specs": {}}


def test_facade_unknown_alias_and_bad_syntax_are_bad_requests(client, nova_flavor):
    flavor = nova_flavor("gzm")
    specs = f"{V21}/flavors/{flavor['id']}/os-extra_specs"
    message = nova_fault(client.post(specs, json={"extra_specs": {KEY: "x9:2"}}), "badRequest", 400)
    assert "PCI alias x9 is not configured (configured: a1, b1, c1)" in message
    message = nova_fault(client.put(f"{specs}/{KEY}", json={KEY: "a1:0"}), "badRequest", 400)
    assert KEY in message and "the count must be a whole number from 1 to 16" in message
    assert client.get(specs).get_json() == {"extra_specs": {}}


# ---- seed 003 through novaclient's shell -----------------------------------------------------------

def shell(nova, command: str) -> None:  # noqa: F811
    """Run one `nova ...` command line as the nova CLI parses and runs it, on the test's client (the
    CLI itself would want a Keystone to authenticate against)."""
    cli = nova_cli.OpenStackComputeShell()
    cli.extensions = []
    args = cli.get_subcommand_parser(nova.api_version, do_help=False, argv=[]).parse_args(shlex.split(command))
    args.func(nova, args)


def test_nova_flavor_key_and_flavor_show_as_the_seed_shows_them(nova, capsys):  # noqa: F811
    nova.flavors.create("gzm", ram=1024, vcpus=2, disk=10)
    shell(nova, 'flavor-key gzm set "pci_passthrough:alias"="a1:2"')
    capsys.readouterr()
    shell(nova, "flavor-show gzm")
    shown = {cells[1].strip(): cells[2].strip() for line in capsys.readouterr().out.splitlines()
             if len(cells := line.split("|")) == 4}
    assert shown["extra_specs"] == '{"pci_passthrough:alias": "a1:2"}'     # novaclient prints dicts as JSON
    assert (shown["name"], shown["ram"], shown["vcpus"], shown["disk"]) == ("gzm", "1024", "2", "10")
    assert (shown["OS-FLV-DISABLED:disabled"], shown["os-flavor-access:is_public"]) == ("False", "True")

    shell(nova, 'flavor-key gzm set "pci_passthrough:alias"="a1:2,b1:1"')       # the seed's second form
    assert nova.flavors.find(name="gzm").get_keys() == {KEY: "a1:2,b1:1"}
    with pytest.raises(nova_exc.BadRequest) as err:
        shell(nova, 'flavor-key gzm set "pci_passthrough:alias"="gpu:1"')
    assert "PCI alias gpu is not configured" in str(err.value)
    shell(nova, "flavor-key gzm unset pci_passthrough:alias")
    assert nova.flavors.find(name="gzm").get_keys() == {}
