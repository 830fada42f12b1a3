"""Nova's servers and server actions through the facade: tenancy, statuses, bodies, status codes,
and every fault in Nova's shape."""
from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import pytest

from engine.dao import devices as devices_dao
from engine.dao import vms as vms_dao
from engine.nova import actions
from tests.unit.engine.nova.conftest import TENANT, V21, nova_fault
from tests.unit.engine.tokens import authenticated, issue_token

REDIRECTION = {"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "2"}


def show(client, server_id, prefix=V21):
    r = client.get(f"{prefix}/servers/{server_id}")
    assert r.status_code == 200, r.get_json()
    return r.get_json()["server"]


def act(client, server_id, body, prefix=V21):
    return client.post(f"{prefix}/servers/{server_id}/action", json=body)


# ---- create, show, list --------------------------------------------------------------------------

def test_create_from_flavor_ref(client, nova_flavor, sessions):
    flavor = nova_flavor(ram=1024, vcpus=2, specs=REDIRECTION)
    r = client.post(f"{V21}/servers", json={"server": {"name": "desk", "flavorRef": flavor["id"], "imageRef": "",
                                                       "metadata": {"usb_controller_requests": "ehci:2"},
                                                       "min_count": 1, "max_count": 1}})
    assert r.status_code == 202, r.get_json()
    created = r.get_json()["server"]
    assert r.headers["Location"] == f"http://localhost/v2.1/{TENANT}/servers/{created['id']}"
    assert created["links"][0] == {"rel": "self", "href": r.headers["Location"]}
    assert created["OS-DCF:diskConfig"] == "MANUAL"

    server = show(client, created["id"])
    assert (server["name"], server["status"], server["tenant_id"]) == ("desk", "SHUTOFF", TENANT)
    assert (server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"], server["OS-EXT-STS:task_state"]) == \
        ("stopped", 4, None)
    assert server["flavor"] == {"id": flavor["id"], "links": [
        {"rel": "bookmark", "href": f"http://localhost/{TENANT}/flavors/{flavor['id']}"}]}
    assert server["metadata"] == {"usb_controller_requests": "ehci:2"}
    with sessions() as s:
        vm = vms_dao.get(s, created["id"])
        assert (vm.project_id, vm.memory_mb, vm.vcpus, vm.graphics, vm.flavor) == (TENANT, 1024, 2, "spice",
                                                                                   flavor["id"])
        assert [(d.type, d.device) for d in devices_dao.list_for_vm(s, vm.id)] == \
            [("controller", "usb"), ("redirdev", "spicevmc"), ("redirdev", "spicevmc")]


def test_flavor_ref_may_be_a_link(client, nova_flavor):
    flavor = nova_flavor()
    r = client.post(f"{V21}/servers", json={"server": {"name": "linked", "flavorRef": flavor["links"][0]["href"]}})
    assert r.status_code == 202, r.get_json()
    assert show(client, r.get_json()["server"]["id"])["flavor"]["id"] == flavor["id"]


def test_list_and_detail_show_the_tenants_servers_only(client, nova_server):
    mine = nova_server("mine")
    nova_server("theirs", prefix="/v2.1/t2")
    r = client.get(f"{V21}/servers")
    assert r.status_code == 200
    assert r.get_json() == {"servers": [{"id": mine["id"], "name": "mine", "links": mine["links"]}]}
    detail = client.get(f"{V21}/servers/detail").get_json()["servers"]
    assert [(s["id"], s["status"]) for s in detail] == [(mine["id"], "SHUTOFF")]
    # /v3 has no tenant in its path: the local administrator sees every project
    assert {s["name"] for s in client.get("/v3/servers").get_json()["servers"]} == {"mine", "theirs"}


def test_server_lists_come_in_pages_with_a_next_link(client, nova_server):
    """Nova's limit and marker: a full page links to the next in servers_links; a marker that is not a
    server of the caller's is a bad request."""
    ids = {name: nova_server(name)["id"] for name in ("c", "a", "b")}
    nova_server("theirs", prefix="/v2.1/t2")
    for path in ("servers", "servers/detail"):
        first = client.get(f"{V21}/{path}?limit=2").get_json()
        assert [srv["name"] for srv in first["servers"]] == ["a", "b"]
        [nxt] = first["servers_links"]
        assert nxt["rel"] == "next" and f"/v2.1/{TENANT}/{path}?" in nxt["href"]
        assert f"marker={ids['b']}" in nxt["href"] and "limit=2" in nxt["href"]
        href = urlsplit(nxt["href"])
        rest = client.get(f"{href.path}?{href.query}").get_json()
        assert [srv["name"] for srv in rest["servers"]] == ["c"] and "servers_links" not in rest
    assert "servers_links" not in client.get(f"{V21}/servers").get_json()
    assert client.get(f"{V21}/servers?limit=5000").status_code == 200      # cut to the maximum, as Nova does
    assert client.get(f"{V21}/servers?limit=0").get_json() == {"servers": []}
    nova_fault(client.get(f"{V21}/servers?limit=-1"), "badRequest", 400)
    assert "not found" in nova_fault(client.get(f"{V21}/servers?marker=nope"), "badRequest", 400)


def test_another_tenants_server_is_item_not_found(client, nova_server, sessions):
    theirs = nova_server("theirs", prefix="/v2.1/t2")
    nova_fault(client.get(f"{V21}/servers/{theirs['id']}"), "itemNotFound", 404)
    nova_fault(client.delete(f"{V21}/servers/{theirs['id']}"), "itemNotFound", 404)
    nova_fault(act(client, theirs["id"], {"os-start": None}), "itemNotFound", 404)
    nova_fault(act(client, theirs["id"], {"attach_usb_controller": {"type": "ehci"}}), "itemNotFound", 404)
    with sessions() as s:
        assert vms_dao.get(s, theirs["id"]) is not None


def test_unknown_server_is_item_not_found(client):
    assert "VM nope does not exist" in nova_fault(client.get(f"{V21}/servers/nope"), "itemNotFound", 404)


def test_create_on_v3_goes_to_the_default_project(client, nova_server, sessions):
    server = nova_server("v3server", prefix="/v3")
    assert server["links"][0]["href"] == f"http://localhost/v3/servers/{server['id']}"
    with sessions() as s:
        assert vms_dao.get(s, server["id"]).project_id == "default"


@pytest.mark.parametrize("server,field", [
    ({"flavorRef": "1"}, "server.name"),
    ({"name": "x"}, "server.flavorRef"),
    ({"name": "", "flavorRef": "1"}, "server.name"),
    ({"name": "x", "flavorRef": "1", "min_count": 2}, "server.min_count"),
    ({"name": "x", "flavorRef": "1", "max_count": 3}, "server.max_count"),
    ({"name": "x", "flavorRef": "1", "metadata": {"k": 1}}, "server.metadata.k"),
    ({"name": "x", "flavorRef": "1", "networks": [{"uuid": "n1"}]}, "server.networks"),
    ({"name": "x", "flavorRef": "1", "key_name": "k"}, "server.key_name"),
])
def test_bad_create_bodies_are_bad_requests(client, server, field):
    message = nova_fault(client.post(f"{V21}/servers", json={"server": server}), "badRequest", 400)
    assert f"field/attribute {field}." in message


def test_unknown_flavor_ref_is_a_bad_request_as_in_nova(client):
    message = nova_fault(client.post(f"{V21}/servers", json={"server": {"name": "x", "flavorRef": "nope"}}),
                         "badRequest", 400)
    assert "Flavor nope does not exist" in message
    refused = client.get("/api/events?code=VM_ADD_REFUSED").get_json()
    assert [e["vars"]["reasons"][0]["code"] for e in refused] == ["FLAVOR_NOT_FOUND"]     # audited once


def test_duplicate_server_name_is_conflicting_request(client, nova_server, nova_flavor):
    nova_server("twice")
    r = client.post(f"{V21}/servers", json={"server": {"name": "twice", "flavorRef": nova_flavor("f")["id"]}})
    nova_fault(r, "conflictingRequest", 409)


# ---- actions, delete -----------------------------------------------------------------------------

def test_start_stop_delete(client, nova_server, registered_host, host1):
    server = nova_server()
    r = act(client, server["id"], {"os-start": None})
    assert r.status_code == 202 and r.get_data() == b""
    running = show(client, server["id"])
    assert (running["status"], running["OS-EXT-STS:vm_state"], running["OS-EXT-STS:power_state"]) == \
        ("ACTIVE", "active", 1)
    assert running["OS-EXT-SRV-ATTR:host"] == "host1" and running["hostId"]
    assert server["id"] in host1.domains

    nova_fault(act(client, server["id"], {"os-start": None}), "conflictingRequest", 409)
    nova_fault(client.delete(f"{V21}/servers/{server['id']}"), "conflictingRequest", 409)

    r = act(client, server["id"], {"os-stop": None})
    assert r.status_code == 202
    assert show(client, server["id"])["status"] == "SHUTOFF"

    r = client.delete(f"{V21}/servers/{server['id']}")
    assert r.status_code == 204
    nova_fault(client.get(f"{V21}/servers/{server['id']}"), "itemNotFound", 404)


@pytest.mark.parametrize("status,nova", [("down", "SHUTOFF"), ("powering_up", "BUILD"), ("up", "ACTIVE"),
                                         ("paused", "PAUSED"), ("powering_down", "ACTIVE"),
                                         ("unknown", "ERROR")])
def test_status_follows_the_vm(client, make_vm, status, nova):
    vm = make_vm(status=status, project_id=TENANT)
    assert show(client, vm.id)["status"] == nova


def test_actions_table():
    assert set(actions.ACTIONS) == {"os-start", "os-stop", "attach_usb_controller", "attach_usb_devices",
                                    "detach_usb_devices"}


def test_unknown_action_is_a_bad_request(client, nova_server):
    server = nova_server()
    assert "no such action: reboot" in nova_fault(act(client, server["id"], {"reboot": {"type": "SOFT"}}),
                                                  "badRequest", 400)
    nova_fault(act(client, server["id"], {}), "badRequest", 400)
    nova_fault(act(client, server["id"], {"os-start": {"force": True}}), "badRequest", 400)


def test_an_action_body_of_several_keys_is_refused_and_none_of_them_runs(client, nova_server, sessions):
    server = nova_server()
    message = nova_fault(act(client, server["id"], {"os-start": None, "attach_usb_controller": {"type": "ehci"}}),
                         "badRequest", 400)
    assert "too many body keys" in message
    with sessions() as s:
        assert vms_dao.get(s, server["id"]).status == "down"
    assert client.get(f"/api/vms/{server['id']}/controllers").get_json() == []


def test_attach_usb_controller_adds_the_controllers_and_keeps_the_request(client, nova_server):
    server = nova_server()
    r = act(client, server["id"], {"attach_usb_controller": {"type": "ehci", "count": 2}})
    assert r.status_code == 202, r.get_json()
    controllers = client.get(f"/api/vms/{server['id']}/controllers").get_json()
    assert sorted((c["model"], c["index"]) for c in controllers) == [("ehci", 0), ("ehci", 1)]
    shown = client.get(f"/v2/{TENANT}/servers/{server['id']}").get_json()["server"]
    assert json.loads(shown["metadata"]["usb_controller_requests"]) == [{"type": "ehci", "count": 2}]


def test_attach_usb_controller_refusals_are_nova_faults(client, nova_server, registered_host, host1):
    server = nova_server()
    assert act(client, server["id"], {"os-start": None}).status_code == 202
    message = nova_fault(act(client, server["id"], {"attach_usb_controller": {"type": "ehci"}}),
                         "conflictingRequest", 409)
    assert "stop the VM first" in message


def test_attach_usb_controller_of_an_unknown_type_is_bad_input(client, nova_server):
    """Nova answers a value outside a field's enum with 400 (it was a 409, as if the server's state
    were the matter); nothing is added."""
    server = nova_server()
    message = nova_fault(act(client, server["id"], {"attach_usb_controller": {"type": "ohci9000"}}),
                         "badRequest", 400)
    assert "ohci9000" in message and "qemu-xhci" in message
    assert client.get(f"/api/vms/{server['id']}/controllers").get_json() == []


@pytest.mark.parametrize("value", [None, "ehci", {"count": 2}, {"type": 5}, {"type": "ehci", "count": 0},
                                   {"type": "ehci", "count": "two"}, {"type": "ehci", "ports": 4}])
def test_attach_usb_controller_body_is_checked(client, nova_server, value):
    server = nova_server()
    nova_fault(act(client, server["id"], {"attach_usb_controller": value}), "badRequest", 400)


# ---- faults in Nova's shape ----------------------------------------------------------------------

def test_unknown_path_and_method_answer_in_novas_shape(client):
    assert "No resource" in nova_fault(client.get(f"{V21}/os-hypervisors"), "itemNotFound", 404)
    nova_fault(client.get("/v3"), "itemNotFound", 404)
    r = client.put(f"{V21}/servers", json={})
    nova_fault(r, "badMethod", 405)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_malformed_json_and_media_type(client):
    nova_fault(client.post(f"{V21}/servers", data="{nope", content_type="application/json"), "badRequest", 400)
    nova_fault(client.post(f"{V21}/servers", data="name=x", content_type="text/plain"), "badMediaType", 415)


def test_host_failures(client, nova_server, registered_host, host1):
    server = nova_server()
    host1.fail("VM.create", "createErr")
    message = nova_fault(act(client, server["id"], {"os-start": None}), "computeFault", 502)
    assert "host1" in message
    host1.unreachable = True
    nova_fault(act(client, server["id"], {"os-start": None}), "serviceUnavailable", 503)
    assert show(client, server["id"])["status"] == "SHUTOFF"


def test_unexpected_error_is_a_compute_fault_without_details(client, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(vms_dao, "list", explode)
    with caplog.at_level(logging.ERROR, logger="engine.faults"):
        r = client.get(f"{V21}/servers")
    assert "secret" not in nova_fault(r, "computeFault", 500)
    assert "secret internals" in caplog.text


# ---- what a member sees; request ids -------------------------------------------------------------

SRV_ATTR = ("OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-SRV-ATTR:instance_name")


def test_which_host_runs_a_server_is_an_administrators_to_know(app, client, sessions, make_vm, make_host):
    vm = make_vm(status="up", host=make_host("hv-07"), project_id=TENANT)
    admin_view = show(client, vm.id)
    assert [admin_view[k] for k in SRV_ATTR] == ["hv-07", "hv-07", vm.name]
    member = authenticated(app.test_client(), issue_token(sessions, "alice", "member", TENANT))
    member_view = show(member, vm.id)
    assert not set(SRV_ATTR) & set(member_view)
    assert {k: v for k, v in admin_view.items() if k not in SRV_ATTR} == member_view
    r = member.get(f"{V21}/servers/detail")
    assert r.status_code == 200 and not set(SRV_ATTR) & set(r.get_json()["servers"][0])


def test_every_answer_of_the_facade_carries_nova_request_ids(app, client, nova_server):
    server = nova_server()
    answers = [client.get(f"{V21}/servers/{server['id']}"), client.get(f"{V21}/servers/no-such-server"),
               act(client, server["id"], {"reboot": {}}), app.test_client().get(f"{V21}/servers"),
               client.get("/v2.1/"), client.get(f"{V21}/servers", headers={"X-Request-Id": "abc-123"})]
    assert [r.status_code for r in answers] == [200, 404, 400, 401, 200, 200]
    for r in answers:
        ours = r.headers["X-Request-Id"]
        for header in ("x-openstack-request-id", "x-compute-request-id"):
            value = r.headers[header]
            assert value.startswith("req-") and value.replace("-", "").endswith(ours.replace("-", ""))
    assert answers[-1].headers["x-openstack-request-id"] == "req-abc-123"
    assert client.get("/api/vms").headers.get("x-openstack-request-id") is None     # the facade's only


@pytest.mark.parametrize("key", ["a/b", "é", "x" * 256, "tab\there"])
def test_server_metadata_keys_follow_novas_syntax(client, key):
    flavor = client.post(f"{V21}/flavors", json={"flavor": {"name": "m", "ram": 64, "vcpus": 1, "disk": 0}})
    body = {"server": {"name": "s1", "flavorRef": flavor.get_json()["flavor"]["id"], "metadata": {key: "v"}}}
    r = client.post(f"{V21}/servers", json=body)
    nova_fault(r, "badRequest", 400)
    assert client.get(f"{V21}/servers").get_json()["servers"] == []
    ok = {**body, "server": {**body["server"], "metadata": {"role:db .x-y_z": "v"}}}
    assert client.post(f"{V21}/servers", json=ok).status_code == 202


# ---- the list's name and status filters ----------------------------------------------------------

def _names(client, query):
    r = client.get(f"{V21}/servers?{query}")
    assert r.status_code == 200, r.get_json()
    return [s["name"] for s in r.get_json()["servers"]], r.get_json().get("servers_links")


def test_the_list_filters_by_a_name_pattern_and_a_status(client, nova_server, nova_flavor):
    flavor = nova_flavor("f")
    for name in ("web-1", "web-2", "db-1"):
        nova_server(name, flavor=flavor)
    assert _names(client, "name=^web")[0] == ["web-1", "web-2"]
    assert _names(client, "name=db")[0] == ["db-1"]
    assert _names(client, "name=1$&status=SHUTOFF")[0] == ["db-1", "web-1"]
    assert _names(client, "status=shutoff")[0] == ["db-1", "web-1", "web-2"]
    assert _names(client, "status=ACTIVE")[0] == []
    assert _names(client, "status=BOGUS")[0] == []                    # Nova 2.1: an unknown status matches none
    assert _names(client, "flavor=nope&name=web-2")[0] == ["web-2"]   # other filters are ignored
    nova_fault(client.get(f"{V21}/servers?name=(unclosed"), "badRequest", 400)


def test_a_filtered_list_pages_over_the_matches(client, nova_server, nova_flavor):
    flavor = nova_flavor("f")
    for name in ("a-web", "b-db", "c-web", "d-db", "e-web"):
        nova_server(name, flavor=flavor)
    first, links = _names(client, "name=web&limit=2")
    assert first == ["a-web", "c-web"] and links
    query = links[0]["href"].split("?", 1)[1]
    assert _names(client, query)[0] == ["e-web"]


def test_a_name_pattern_that_backtracks_without_end_is_refused_in_bounded_time(client, nova_server, nova_flavor,
                                                                               monkeypatch):
    from engine.nova import servers
    monkeypatch.setattr(servers, "NAME_FILTER_SECONDS", 0.05)
    nova_server("a" * 40 + "-x", flavor=nova_flavor("f"))
    message = nova_fault(client.get(f"{V21}/servers?name=(a|aa)%2B%24"), "badRequest", 400)
    assert "takes longer" in message


def test_paths_without_the_project_act_on_the_tokens_projects_as_nova_routes_them(app, client, sessions, nova_server):
    """Nova routes every path with and without the project id (an endpoint such as
    http://host/v2.1); without it, a member acts on its own projects."""
    ours = nova_server("ours")
    member = authenticated(app.test_client(), issue_token(sessions, "alice", "member", TENANT))
    r = member.get("/v2.1/servers")
    assert r.status_code == 200, r.get_json()
    assert [s["name"] for s in r.get_json()["servers"]] == ["ours"]
    assert member.get(f"/v2.1/servers/{ours['id']}").get_json()["server"]["tenant_id"] == TENANT
    assert member.get("/v2.1/servers/detail").status_code == 200
    assert member.get("/v2.1/flavors").status_code == 200
    r = member.get("/v2.1/servers", headers={"OpenStack-API-Version": "compute 2.1"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    nova_fault(member.get("/v2.1/servers", headers={"OpenStack-API-Version": "compute 2.9"}), "computeFault", 406)
    assert [s["name"] for s in member.get(f"/v2.1/{TENANT}/servers").get_json()["servers"]] == ["ours"]
    assert client.get("/v2.1").get_json()["version"]["id"] == "v2.1"        # the version document stays
