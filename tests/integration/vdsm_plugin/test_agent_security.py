"""The agent against the real libvirtd: only its engine (mutual TLS) drives it, a domain it did not
define is invisible and untouched, file paths stay inside its directories, and hostile strings are
refused or land escaped in the live domain XML. Nothing here boots a guest."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import requests
from lxml import etree

from tests.integration.agentproc import ROOT, AgentProcess
from tests.integration.guest import domain_xml
from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly

PARAMS = {"memSize": 64, "vcpus": 1, "machine": "pc"}
PING = {"jsonrpc": "2.0", "method": "Host.ping", "id": 1}


@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory, libvirt_uri):
    agent = AgentProcess(tmp_path_factory.mktemp("tls-agent"), libvirt_uri, tls=True)
    agent.start()
    yield agent
    agent.stop()


def test_the_engine_certificate_is_accepted(tls_agent):
    answer = requests.post(tls_agent.url, json=PING, cert=tls_agent.client_cert, verify=tls_agent.ca, timeout=5)
    assert answer.json()["result"] == {"pong": True}


def test_no_client_certificate_is_refused(tls_agent):
    with pytest.raises(requests.exceptions.RequestException):
        requests.post(tls_agent.url, json=PING, verify=tls_agent.ca, timeout=5)


def test_a_certificate_of_another_ca_is_refused(tls_agent, tmp_path):
    from plugboard import pki
    other = pki.init(tmp_path / "other")
    with pytest.raises(requests.exceptions.RequestException):
        requests.post(tls_agent.url, json=PING, cert=(str(other.engine_cert), str(other.engine_key)),
                      verify=tls_agent.ca, timeout=5)


def test_plain_http_off_loopback_does_not_start(tmp_path):
    run = subprocess.run([sys.executable, "-m", "plugboard.cli", "agent", "serve", "--listen", "0.0.0.0:0",
                          "--insecure-dev-http", "--state-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "loopback" in run.stderr


# ---- a domain Plugboard did not define ----------------------------------------------------------

@pytest.fixture
def foreign(libvirt_uri, guest, tmp_path):
    import libvirt
    conn = libvirt.open(libvirt_uri)
    vid = str(uuid.uuid4())
    dom = conn.defineXML(domain_xml(f"not-plugboard-{vid[:8]}", vid, guest.kernel, guest.initrd,
                                    tmp_path / "console.log"))
    yield vid, dom
    try:
        dom.undefine()
    except libvirt.libvirtError:
        pass
    conn.close()


NIC = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": "ua-x1",
       "macAddr": "56:6f:1a:70:00:01", "nicModel": "pv"}


@pytest.mark.parametrize("verb, params", [
    ("VM.getDevices", {}), ("VM.start", {}), ("VM.destroy", {}), ("VM.destroy", {"undefine": False}),
    ("VM.hotplugNic", {"nic": NIC}), ("VM.hotunplugNic", {"nic": {"alias": "ua-x1"}}),
    ("VM.updateNic", {"nic": {"alias": "ua-x1", "linkActive": False}}),
    ("VM.addController", {"controller": {"type": "controller", "device": "usb", "model": "ehci", "index": 1}}),
    ("VM.removeController", {"controller": {"alias": "ua-c1"}}),
    ("VM.hotplugRedirdev", {"redirdev": {"type": "redirdev", "device": "tcp", "host": "127.0.0.1", "port": 4000}}),
    ("VM.hotunplugRedirdev", {"redirdev": {"alias": "ua-r1"}}),
    ("VM.hotunplugHostdev", {"hostdev": {"alias": "ua-h1"}}),
])
def test_a_foreign_domain_is_refused_and_left_as_it_was(rpc, foreign, verb, params):
    vid, dom = foreign
    before = dom.XMLDesc(0)
    with pytest.raises(RpcError) as e:
        rpc(verb, vmId=vid, **params)
    assert e.value.code == 1 and e.value.data["name"] == "noVM"
    assert dom.XMLDesc(0) == before and dom.isPersistent() and not dom.isActive()


def test_list_leaves_a_foreign_domain_out(rpc, foreign):
    assert foreign[0] not in {v["vmId"] for v in rpc("VM.list")["vms"]}


def test_create_does_not_replace_a_foreign_definition(rpc, foreign):
    vid, dom = foreign
    before = dom.XMLDesc(0)
    with pytest.raises(RpcError) as e:
        rpc("VM.create", vmId=vid, params={**PARAMS, "name": "pb-takeover"})
    assert e.value.data["name"] == "exist"
    assert dom.XMLDesc(0) == before and not dom.isActive()


# ---- files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, path", [("kernel", "/etc/shadow"), ("initrd", "/root/.bashrc"),
                                         ("serialLog", "/etc/plugboard-pwned"), ("serialLog", "/root/x.log")])
def test_files_outside_the_directories_are_refused(rpc, new_id, field, path):
    vid = new_id()
    with pytest.raises(RpcError) as e:
        rpc("VM.define", vmId=vid, params={**PARAMS, "name": f"pb-path-{vid[:8]}", field: path})
    assert (e.value.code, e.value.data["field"]) == (316, f"params/{field}")
    with pytest.raises(RpcError):
        rpc("VM.getDevices", vmId=vid)


# ---- hostile strings against the live XML --------------------------------------------------------

HOSTILE = "a<b>&c'd\"e]]></cmdline><evil/>"


def test_free_text_lands_escaped_in_the_live_xml(rpc, libvirt_uri, new_id):
    import libvirt
    vid = new_id()
    try:
        rpc("VM.define", vmId=vid, params={**PARAMS, "name": f"pb-esc-{vid[:8]}", "cmdline": HOSTILE,
                                           "customProperties": {"note": HOSTILE}})
        conn = libvirt.open(libvirt_uri)
        try:
            live = etree.fromstring(conn.lookupByUUIDString(vid).XMLDesc(0).encode())
        finally:
            conn.close()
        assert live.findtext("os/cmdline") == HOSTILE
        assert live.find(".//evil") is None
        ns = {"pb": "https://plugboard.dev/xmlns/vm/1"}
        assert live.findtext("metadata/pb:vm/pb:customProperties/pb:property[@name='note']", namespaces=ns) == HOSTILE
    finally:
        destroy_quietly(rpc, vid)


@pytest.mark.parametrize("nic", [
    {**NIC, "device": "vnlink", "network": "plugboard", "specParams": {"portProfile": "x'/><evil/>"}},
    {**NIC, "network": "pbbr0'/><evil/>"},
])
def test_strings_libvirt_copies_raw_are_refused_and_nothing_is_defined(rpc, new_id, nic):
    vid = new_id()
    with pytest.raises(RpcError) as e:
        rpc("VM.define", vmId=vid, params={**PARAMS, "name": f"pb-inj-{vid[:8]}", "devices": [nic]})
    assert e.value.code == -32602
    with pytest.raises(RpcError):
        rpc("VM.getDevices", vmId=vid)


@pytest.mark.parametrize("field, value", [("cmdline", "console=ttyS0\u0007"), ("name", "pb-bell\u0007"),
                                          ("osType", "linux\n"), ("cmdline", "a\u0000b")])
def test_control_characters_are_refused(rpc, new_id, field, value):
    vid = new_id()
    params = {**PARAMS, "name": f"pb-ctl-{vid[:8]}", field: value}
    with pytest.raises(RpcError) as e:
        rpc("VM.create", vmId=vid, params=params)
    assert e.value.code == -32602 and e.value.data["field"] == f"params/{field}"
