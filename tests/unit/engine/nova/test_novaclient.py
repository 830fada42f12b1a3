"""python-novaclient's library drives the facade over real HTTP: the app served by werkzeug on
127.0.0.1 (an ephemeral port, in a thread), a keystoneauth1 session on a token endpoint, the FakeHosts
of the unit tier behind the app."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import client as nova_client
from novaclient import exceptions as nova_exc
from werkzeug.serving import make_server

from engine.dao import devices as devices_dao
from engine.dao import vms as vms_dao
from tests.unit.engine.tokens import issue_token

TENANT = "demo"


@pytest.fixture
def base_url(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="nova-facade", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def nova(base_url, sessions):
    """novaclient with an admin's token, sent as X-Auth-Token by keystoneauth's token endpoint."""
    auth = token_endpoint.Token(f"{base_url}/v2.1/{TENANT}", issue_token(sessions))
    return nova_client.Client("2.1", session=ks_session.Session(auth=auth))


def test_flavor_list_pages_sorts_and_filters_as_novaclient_asks(nova):
    for i, ram in enumerate((2048, 512, 1024)):
        nova.flavors.create(f"m1.f{i}", ram=ram, vcpus=1, disk=i)
    nova.flavors.create("m1.private", ram=256, vcpus=1, disk=0, is_public=False)
    assert [f.name for f in nova.flavors.list(sort_key="name", sort_dir="desc", is_public=True)] == \
        ["m1.f2", "m1.f1", "m1.f0"]
    first = nova.flavors.list(sort_key="memory_mb", limit=2, is_public=None)
    assert [f.name for f in first] == ["m1.private", "m1.f1"]
    rest = nova.flavors.list(sort_key="memory_mb", marker=first[-1].id, is_public=None)
    assert [f.name for f in rest] == ["m1.f2", "m1.f0"]
    assert [f.name for f in nova.flavors.list(min_ram=1024, min_disk=1)] == ["m1.f2"]     # f0: no disk
    assert [f.name for f in nova.flavors.list(is_public=False)] == ["m1.private"]
    with pytest.raises(nova_exc.BadRequest):
        nova.flavors.list(sort_key="swap")


def test_flavor_create_set_keys_get_keys_show(nova):
    flavor = nova.flavors.create("m1.desktop", ram=1024, vcpus=2, disk=0)
    assert (flavor.name, flavor.ram, flavor.vcpus, flavor.disk) == ("m1.desktop", 1024, 2, 0)

    flavor.set_keys({"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "2"})
    assert flavor.get_keys() == {"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "2"}
    flavor.unset_keys(["hw:redirected_usb_ports"])
    assert flavor.get_keys() == {"hw:usb_model": "qemu-xhci"}

    shown = nova.flavors.get(flavor.id)
    assert (shown.id, shown.name, shown.ram, shown.is_public) == (flavor.id, "m1.desktop", 1024, True)
    assert [f.id for f in nova.flavors.list()] == [flavor.id]

    with pytest.raises(nova_exc.BadRequest) as err:
        flavor.set_keys({"hw:usb_model": "ehci"})
    assert "hw:usb_model" in str(err.value)
    with pytest.raises(nova_exc.Conflict):
        nova.flavors.create("m1.desktop", ram=512, vcpus=1, disk=0)

    nova.flavors.delete(flavor)
    with pytest.raises(nova_exc.NotFound):
        nova.flavors.get(flavor.id)


def test_server_create_get_start_stop_delete(nova, client, registered_host, host1, sessions):
    flavor = nova.flavors.create("m1.usb", ram=512, vcpus=1, disk=0)
    flavor.set_keys({"usb_redirection_devices": '[{"bus": "usb", "type": "spicevmc"}]'})

    server = nova.servers.create("desk1", image=None, flavor=flavor, meta={"role": "vdi"})
    server = nova.servers.get(server.id)
    assert (server.name, server.status, server.tenant_id) == ("desk1", "SHUTOFF", TENANT)
    assert server.flavor["id"] == flavor.id and server.metadata == {"role": "vdi"}
    assert [s.id for s in nova.servers.list()] == [server.id]
    with sessions() as s:
        assert vms_dao.get(s, server.id).graphics == "spice"
        assert [(d.type, d.device) for d in devices_dao.list_for_vm(s, server.id)] == [("redirdev", "spicevmc")]

    server.start()
    server = nova.servers.get(server.id)
    assert server.status == "ACTIVE"
    sent = host1.sent("VM.create")[-1]["params"]
    assert sent["graphics"] == "spice" and [d["type"] for d in sent["devices"]] == ["redirdev"]

    with pytest.raises(nova_exc.Conflict):
        server.start()
    with pytest.raises(nova_exc.Conflict):
        nova.servers.delete(server)

    server.stop()
    assert nova.servers.get(server.id).status == "SHUTOFF"
    nova.servers.delete(server)
    with pytest.raises(nova_exc.NotFound):
        nova.servers.get(server.id)


def test_novaclient_pages_through_servers_with_limit_and_marker(nova):
    flavor = nova.flavors.create("m1.tiny", ram=256, vcpus=1, disk=0)
    made = sorted((nova.servers.create(name, image=None, flavor=flavor) for name in ("s3", "s1", "s2")),
                  key=lambda server: server.name)
    assert [s.name for s in nova.servers.list(limit=2)] == ["s1", "s2"]
    assert [s.name for s in nova.servers.list(marker=made[1].id)] == ["s3"]
    assert [s.name for s in nova.servers.list(limit=-1)] == ["s1", "s2", "s3"]     # novaclient follows the pages
    with pytest.raises(nova_exc.BadRequest):
        nova.servers.list(marker="no-such-server")


def _client(base_url: str, tenant: str, token: str):
    return nova_client.Client("2.1", session=ks_session.Session(
        auth=token_endpoint.Token(f"{base_url}/v2.1/{tenant}", token)))


def test_another_tenant_sees_nothing(nova, base_url, sessions):
    flavor = nova.flavors.create("m1.small", ram=256, vcpus=1, disk=0)
    server = nova.servers.create("mine", image=None, flavor=flavor)
    token = issue_token(sessions, "someone", "member", "someone-else")
    other = _client(base_url, "someone-else", token)
    assert other.servers.list() == []
    with pytest.raises(nova_exc.NotFound):
        other.servers.get(server.id)
    with pytest.raises(nova_exc.NotFound):
        other.servers.start(server.id)
    with pytest.raises(nova_exc.Forbidden):        # a tenant in the URL that is not the token's
        _client(base_url, TENANT, token).servers.list()


def test_a_bad_token_is_unauthorized(base_url):
    with pytest.raises(nova_exc.Unauthorized):
        _client(base_url, TENANT, "not-a-token").servers.list()


def test_microversion_headers(nova):
    nova.flavors.list()
    # novaclient at 2.1 sends X-OpenStack-Nova-API-Version: 2.1 and gets it back
    response, _ = nova.client.get("/flavors")
    assert response.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert response.headers["OpenStack-API-Version"] == "compute 2.1"
    newer = nova_client.Client("2.60", session=nova.client.session)
    with pytest.raises(nova_exc.ClientException) as err:
        newer.flavors.list()
    assert err.value.code == 406


def test_a_server_names_the_user_who_created_it(nova, base_url, sessions):
    """user_id is the creator (it read "admin" for every server): a member's server is the member's,
    and the admin who lists every server sees whose it is."""
    flavor = nova.flavors.create("m1.small", ram=256, vcpus=1, disk=0)
    carol = _client(base_url, TENANT, issue_token(sessions, "carol", "member", TENANT))
    server = carol.servers.create("carols", image=None, flavor=flavor)
    assert carol.servers.get(server.id).user_id == "carol"
    mine = nova.servers.create("admins", image=None, flavor=flavor)
    assert {s.name: s.user_id for s in nova.servers.list()} == {"carols": "carol", "admins": "admin"}
    assert nova.servers.get(mine.id).user_id == "admin"
