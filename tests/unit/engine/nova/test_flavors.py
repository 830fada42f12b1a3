"""Nova's flavors and os-extra_specs through the facade: bodies, status codes and faults."""
from __future__ import annotations

import json

import pytest

from tests.unit.engine.nova.conftest import V21, nova_fault

NOVACLIENT_DEFAULTS = {"id": None, "swap": 0, "OS-FLV-EXT-DATA:ephemeral": 0, "rxtx_factor": 1.0,
                       "os-flavor-access:is_public": True}


def test_create_answers_the_flavor(client):
    r = client.post(f"{V21}/flavors", json={"flavor": {"name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1,
                                                       **NOVACLIENT_DEFAULTS}})
    assert r.status_code == 200, r.get_json()
    flavor = r.get_json()["flavor"]
    assert (flavor["name"], flavor["ram"], flavor["vcpus"], flavor["disk"]) == ("m1.tiny", 512, 1, 1)
    assert (flavor["swap"], flavor["OS-FLV-EXT-DATA:ephemeral"], flavor["rxtx_factor"]) == ("", 0, 1.0)
    assert flavor["os-flavor-access:is_public"] is True and flavor["OS-FLV-DISABLED:disabled"] is False
    assert flavor["links"] == [
        {"rel": "self", "href": f"http://localhost/v2.1/t1/flavors/{flavor['id']}"},
        {"rel": "bookmark", "href": f"http://localhost/t1/flavors/{flavor['id']}"}]


def test_create_with_an_id_digit_strings_and_a_number_id(client):
    r = client.post(f"{V21}/flavors", json={"flavor": {"name": "a", "ram": "256", "vcpus": "2", "disk": "0",
                                                       "id": "m1.a"}})
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["flavor"]["id"], r.get_json()["flavor"]["vcpus"]) == ("m1.a", 2)
    r = client.post(f"{V21}/flavors", json={"flavor": {"name": "b", "ram": 256, "vcpus": 1, "disk": 0, "id": 7}})
    assert r.get_json()["flavor"]["id"] == "7"


def test_list_show_and_filters(client, nova_flavor):
    small = nova_flavor("small", ram=256, disk=0)
    big = nova_flavor("big", ram=4096, disk=20)
    r = client.get(f"{V21}/flavors")
    assert r.status_code == 200
    assert r.get_json()["flavors"] == [{"id": small["id"], "links": small["links"], "name": "small"},
                                       {"id": big["id"], "links": big["links"], "name": "big"}]
    assert [f["ram"] for f in client.get(f"{V21}/flavors/detail").get_json()["flavors"]] == [256, 4096]
    assert [f["name"] for f in client.get(f"{V21}/flavors?minRam=1024").get_json()["flavors"]] == ["big"]
    assert [f["name"] for f in client.get(f"{V21}/flavors/detail?minDisk=1").get_json()["flavors"]] == ["big"]
    assert client.get(f"{V21}/flavors/{big['id']}").get_json() == {"flavor": big}
    nova_fault(client.get(f"{V21}/flavors?minRam=lots"), "badRequest", 400)


def test_unknown_flavor_is_item_not_found(client):
    nova_fault(client.get(f"{V21}/flavors/nope"), "itemNotFound", 404)
    nova_fault(client.delete(f"{V21}/flavors/nope"), "itemNotFound", 404)
    nova_fault(client.get(f"{V21}/flavors/nope/os-extra_specs"), "itemNotFound", 404)
    nova_fault(client.post(f"{V21}/flavors/nope/os-extra_specs", json={"extra_specs": {}}), "itemNotFound", 404)


def test_duplicate_name_or_id_is_conflicting_request(client, nova_flavor):
    flavor = nova_flavor("dup", id="d1")
    message = nova_fault(client.post(f"{V21}/flavors", json={"flavor": {"name": "dup", "ram": 512, "vcpus": 1,
                                                                        "disk": 0}}), "conflictingRequest", 409)
    assert "dup already exists" in message
    message = nova_fault(client.post(f"{V21}/flavors", json={"flavor": {"name": "other", "ram": 512, "vcpus": 1,
                                                                        "disk": 0, "id": flavor["id"]}}),
                         "conflictingRequest", 409)
    assert "id d1 already exists" in message


@pytest.mark.parametrize("flavor,field", [
    ({"ram": 512, "vcpus": 1, "disk": 0}, "flavor.name"),
    ({"name": "x", "vcpus": 1, "disk": 0}, "flavor.ram"),
    ({"name": "x", "ram": "lots", "vcpus": 1, "disk": 0}, "flavor.ram"),
    ({"name": "x", "ram": 512, "vcpus": 0, "disk": 0}, "flavor.vcpus"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": -1}, "flavor.disk"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": 0, "swap": 512}, "flavor.swap"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": 0, "OS-FLV-EXT-DATA:ephemeral": 1},
     "flavor.OS-FLV-EXT-DATA:ephemeral"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": 0, "rxtx_factor": 2.0}, "flavor.rxtx_factor"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": 0, "description": "d"}, "flavor.description"),
    ({"name": "x", "ram": 512, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "maybe"},
     "flavor.os-flavor-access:is_public"),
])
def test_bad_create_bodies_are_bad_requests(client, flavor, field):
    message = nova_fault(client.post(f"{V21}/flavors", json={"flavor": flavor}), "badRequest", 400)
    assert f"field/attribute {field}." in message
    assert client.get(f"{V21}/flavors").get_json() == {"flavors": []}


def test_meaning_errors_of_a_create_are_bad_requests(client):
    """Syntax passes, the command refuses: memory below the engine's minimum, an invalid extra spec."""
    message = nova_fault(client.post(f"{V21}/flavors", json={"flavor": {"name": "x", "ram": 8, "vcpus": 1,
                                                                        "disk": 0}}), "badRequest", 400)
    assert "memory_mb" in message


@pytest.mark.parametrize("body", [{}, {"flavor": "m1"}, {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0},
                                                         "extra": 1}])
def test_malformed_create_bodies(client, body):
    nova_fault(client.post(f"{V21}/flavors", json=body), "badRequest", 400)


def test_delete_is_202_and_gone(client, nova_flavor):
    flavor = nova_flavor()
    r = client.delete(f"{V21}/flavors/{flavor['id']}")
    assert r.status_code == 202 and r.get_data() == b""
    nova_fault(client.get(f"{V21}/flavors/{flavor['id']}"), "itemNotFound", 404)


# ---- os-extra_specs ------------------------------------------------------------------------------

def test_extra_specs_create_list_show_update_delete(client, nova_flavor):
    flavor = nova_flavor()
    specs = f"{V21}/flavors/{flavor['id']}/os-extra_specs"
    assert client.get(specs).get_json() == {"extra_specs": {}}

    r = client.post(specs, json={"extra_specs": {"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": 2}})
    assert r.status_code == 200
    assert r.get_json() == {"extra_specs": {"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "2"}}
    r = client.post(specs, json={"extra_specs": {"quota:cpu_shares": "1024"}})      # merged, not replaced
    assert r.get_json() == {"extra_specs": {"quota:cpu_shares": "1024"}}
    assert client.get(specs).get_json() == {"extra_specs": {"hw:usb_model": "qemu-xhci",
                                                            "hw:redirected_usb_ports": "2",
                                                            "quota:cpu_shares": "1024"}}

    assert client.get(f"{specs}/hw:usb_model").get_json() == {"hw:usb_model": "qemu-xhci"}
    r = client.put(f"{specs}/hw:usb_model", json={"hw:usb_model": "nec-xhci"})
    assert r.status_code == 200 and r.get_json() == {"hw:usb_model": "nec-xhci"}

    r = client.delete(f"{specs}/quota:cpu_shares")
    assert r.status_code == 200
    nova_fault(client.get(f"{specs}/quota:cpu_shares"), "itemNotFound", 404)
    nova_fault(client.delete(f"{specs}/quota:cpu_shares"), "itemNotFound", 404)
    assert client.get(specs).get_json() == {"extra_specs": {"hw:usb_model": "nec-xhci",
                                                            "hw:redirected_usb_ports": "2"}}


def test_the_seed_redirection_list_as_a_spec(client, nova_flavor):
    flavor = nova_flavor()
    value = json.dumps([{"bus": "usb", "type": "spicevmc"}])
    r = client.post(f"{V21}/flavors/{flavor['id']}/os-extra_specs",
                    json={"extra_specs": {"usb_redirection_devices": value}})
    assert r.status_code == 200
    assert r.get_json() == {"extra_specs": {"usb_redirection_devices": value}}


def test_invalid_extra_specs_are_bad_requests_naming_the_key(client, nova_flavor):
    flavor = nova_flavor()
    specs = f"{V21}/flavors/{flavor['id']}/os-extra_specs"
    message = nova_fault(client.post(specs, json={"extra_specs": {"hw:usb_model": "ehci"}}), "badRequest", 400)
    assert "hw:usb_model" in message
    message = nova_fault(client.put(f"{specs}/hw:mem_page_size", json={"hw:mem_page_size": "large"}),
                         "badRequest", 400)
    assert "hw:mem_page_size" in message
    message = nova_fault(client.post(specs, json={"extra_specs": {"usb_redirection_devices": '[{"type": "tcp"}]'}}),
                         "badRequest", 400)
    assert "usb_redirection_devices[0].host" in message and "usb_redirection_devices[0].port" in message
    assert client.get(specs).get_json() == {"extra_specs": {}}


@pytest.mark.parametrize("body", [{"extra_specs": {"k": True}}, {"extra_specs": {"k": None}}, {"extra_specs": []},
                                  {"specs": {}}, {}])
def test_malformed_extra_specs_bodies(client, nova_flavor, body):
    flavor = nova_flavor()
    nova_fault(client.post(f"{V21}/flavors/{flavor['id']}/os-extra_specs", json=body), "badRequest", 400)


def test_put_one_key_checks_the_body_against_the_uri(client, nova_flavor):
    flavor = nova_flavor()
    key = f"{V21}/flavors/{flavor['id']}/os-extra_specs/hw:usb_model"
    assert "mismatch" in nova_fault(client.put(key, json={"hw:other": "x"}), "badRequest", 400)
    assert "too many" in nova_fault(client.put(key, json={"hw:usb_model": "none", "b": "c"}), "badRequest", 400)


def test_other_mounts_answer_too(client, nova_flavor):
    flavor = nova_flavor("v2flavor", prefix="/v2/t9")
    assert flavor["links"][0]["href"] == f"http://localhost/v2/t9/flavors/{flavor['id']}"
    r = client.get(f"/v3/flavors/{flavor['id']}")
    assert r.status_code == 200
    assert r.get_json()["flavor"]["links"] == [
        {"rel": "self", "href": f"http://localhost/v3/flavors/{flavor['id']}"},
        {"rel": "bookmark", "href": f"http://localhost/flavors/{flavor['id']}"}]


def test_usb_devices_through_os_extra_specs(client, nova_flavor):
    specs = f"{V21}/flavors/{nova_flavor()['id']}/os-extra_specs"
    r = client.post(specs, json={"extra_specs": {"usb_devices": '[{"id": 5}]'}})
    assert r.status_code == 200 and r.get_json() == {"extra_specs": {"usb_devices": '[{"id": 5}]'}}
    r = client.put(f"{specs}/usb_devices", json={"usb_devices": '[{"vendor_id": "0781", "product_id": "5567"}]'})
    assert r.status_code == 200
    nova_fault(client.put(f"{specs}/usb_devices", json={"usb_devices": '[{"id": 5, "count": 2}]'}), "badRequest", 400)


def test_flavor_pages_sort_keys_and_is_public(client, nova_flavor):
    made = [nova_flavor(f"f{i}", ram=256 * (5 - i), disk=i, vcpus=1 + i % 2) for i in range(5)]
    names = [f["name"] for f in client.get(f"{V21}/flavors").get_json()["flavors"]]
    assert names == ["f4", "f3", "f2", "f1", "f0"]                       # smallest first by default
    r = client.get(f"{V21}/flavors/detail?sort_key=name&sort_dir=asc&limit=2").get_json()
    assert [f["name"] for f in r["flavors"]] == ["f0", "f1"]
    seen, page = [], r
    while True:
        seen += [f["name"] for f in page["flavors"]]
        if "flavors_links" not in page:
            break
        (nxt,) = page["flavors_links"]
        assert nxt["rel"] == "next" and "/v2.1/t1/flavors/detail?" in nxt["href"]
        page = client.get(nxt["href"].removeprefix("http://localhost")).get_json()
    assert seen == ["f0", "f1", "f2", "f3", "f4"]                       # every flavor once, in order
    desc = client.get(f"{V21}/flavors?sort_key=root_gb&sort_dir=desc").get_json()["flavors"]
    assert [f["name"] for f in desc] == ["f4", "f3", "f2", "f1", "f0"]
    by_vcpus = [f["name"] for f in client.get(f"{V21}/flavors/detail?sort_key=vcpus").get_json()["flavors"]]
    assert sorted(by_vcpus[:3]) == ["f0", "f2", "f4"] and sorted(by_vcpus[3:]) == ["f1", "f3"]
    after = client.get(f"{V21}/flavors?sort_key=vcpus&marker={made[0]['id']}").get_json()["flavors"]
    assert [f["name"] for f in after] == by_vcpus[by_vcpus.index("f0") + 1:]
    private = nova_flavor("secret", ram=64, **{"os-flavor-access:is_public": False})
    assert [f["name"] for f in client.get(f"{V21}/flavors?is_public=false").get_json()["flavors"]] == ["secret"]
    assert "secret" not in [f["name"] for f in client.get(f"{V21}/flavors?is_public=true").get_json()["flavors"]]
    assert "secret" not in [f["name"] for f in client.get(f"{V21}/flavors").get_json()["flavors"]]
    assert "secret" in [f["name"] for f in client.get(f"{V21}/flavors?is_public=None").get_json()["flavors"]]
    assert private["os-flavor-access:is_public"] is False
    for query in ("sort_key=ram", "sort_dir=up", "limit=-1", "is_public=maybe", "marker=nope"):
        nova_fault(client.get(f"{V21}/flavors?{query}"), "badRequest", 400)
