"""The agent acts only on its own domains and files: foreign domains are invisible to every verb,
kernel/initrd/serialLog stay inside the configured directories, a failed create leaves nothing, and
each verb call looks its domain up once."""
from __future__ import annotations

import os
import uuid
from dataclasses import replace

import pytest

from tests.unit.vdsm_plugin.test_contract import SAMPLES
from vdsm_plugin import domxml, verbs
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import vm as vm_verbs
from vdsm_plugin.virt import LibvirtFailure

VM_VERBS_ON_A_DOMAIN = sorted(v for v, sample in SAMPLES.items() if "vmId" in sample
                              and v not in ("VM.create", "VM.define"))
PARAMS = {"name": "pb-unit", "memSize": 64, "vcpus": 1, "machine": "pc"}
NIC = {"type": "interface", "device": "bridge", "network": "pbbr0", "macAddr": "56:6f:1a:00:00:01",
       "nicModel": "pv"}


@pytest.fixture
def foreign(fake_agent):
    """A domain of the host that Plugboard did not define, running, with a NIC alias the samples name."""
    vid = str(uuid.uuid4())
    fake_agent.hv.add_vm(vid, name="not-ours", running=True, marked=False)
    return vid


@pytest.mark.parametrize("verb", VM_VERBS_ON_A_DOMAIN)
def test_every_verb_refuses_a_foreign_domain_like_a_missing_one(fake_agent, foreign, verb):
    before = fake_agent.hv.xml(foreign)
    params = {**SAMPLES[verb], "vmId": foreign}
    with pytest.raises(AgentError) as e:
        verbs.METHODS[verb](fake_agent, **params)
    assert e.value.name == "noVM" and e.value.code == 1
    assert fake_agent.hv.xml(foreign) == before and fake_agent.hv.calls == []
    assert fake_agent.hv.running[foreign]


def test_list_shows_only_plugboard_domains(fake_agent, foreign, vm_id):
    assert [v["vmId"] for v in verbs.METHODS["VM.list"](fake_agent)["vms"]] == [vm_id]


@pytest.mark.parametrize("verb", ["VM.create", "VM.define"])
def test_create_never_replaces_a_foreign_definition(fake_agent, verb):
    vid = str(uuid.uuid4())
    fake_agent.hv.add_vm(vid, running=False, marked=False)
    before = fake_agent.hv.xml(vid)
    with pytest.raises(AgentError) as e:
        verbs.METHODS[verb](fake_agent, vmId=vid, params=dict(PARAMS))
    assert e.value.name == "exist" and "state" not in e.value.data
    assert fake_agent.hv.xml(vid) == before and fake_agent.hv.calls == []


def test_a_domain_the_agent_creates_carries_its_mark(fake_agent):
    vid = str(uuid.uuid4())
    vm_verbs.create(fake_agent, vid, dict(PARAMS))
    assert domxml.is_marked(domxml.parse(fake_agent.hv.xml(vid)))


# ---- one lookup per VM, its handle kept ---------------------------------------------------------------

@pytest.mark.parametrize("verb, params", [
    ("VM.hotplugNic", {"nic": {**NIC, "alias": "ua-n1"}}),
    ("VM.getDevices", {}),
    ("VM.updateNic", None),
    ("VM.hotunplugNic", None),
])
def test_one_lookup_per_verb_call(fake_agent, vm_id, verb, params):
    hv = fake_agent.hv
    if params is None:   # the verbs that need the NIC first
        verbs.METHODS["VM.hotplugNic"](fake_agent, vmId=vm_id, nic={**NIC, "alias": "ua-n1"})
        params = {"nic": {"alias": "ua-n1", "linkActive": False}} if verb == "VM.updateNic" \
            else {"nic": {"alias": "ua-n1"}}
    hv.lookups = hv.xml_reads = 0
    verbs.METHODS[verb](fake_agent, vmId=vm_id, **params)
    assert hv.lookups == (0 if verb in ("VM.updateNic", "VM.hotunplugNic") else 1)   # kept from the plug
    # the XML before the change, and again to read what libvirt assigned
    assert hv.xml_reads <= 2


def test_the_handle_is_kept_between_calls(fake_agent, vm_id):
    hv = fake_agent.hv
    for _ in range(3):
        verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    assert hv.lookups == 1


def test_a_kept_handle_of_a_domain_gone_answers_novm(fake_agent, vm_id):
    verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    del fake_agent.hv.doms[vm_id]          # undefined outside the agent, no event handled yet
    with pytest.raises(AgentError) as err:
        verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    assert err.value.name == "noVM"
    assert vm_id not in fake_agent.handles


def test_a_kept_handle_that_fails_is_looked_up_again(fake_agent, vm_id, monkeypatch):
    """A kept handle on a connection that libvirtd closed (restarted) fails with another code than
    no-domain: the domain is looked up again, and the verb answers."""
    verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    kept = fake_agent.handles[vm_id]

    def closed(**_kw):
        raise LibvirtFailure(1, "internal error: client socket is closed")
    monkeypatch.setattr(kept, "xml", closed)
    fake_agent.hv.lookups = 0
    assert verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)["vmId"] == vm_id
    assert fake_agent.hv.lookups == 1 and fake_agent.handles[vm_id] is not kept


def test_a_domain_defined_again_is_looked_up_again(fake_agent, vm_id):
    """A kept handle of an undefined domain is dropped (its event, or the failed call), so a domain
    defined again under the same uuid -- without the mark, here -- is read afresh, never trusted."""
    hv = fake_agent.hv
    verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    fake_agent._on_lifecycle(vm_id, "undefined")
    assert vm_id not in fake_agent.handles
    hv.add_vm(vm_id, marked=False)
    hv.lookups = 0
    with pytest.raises(AgentError) as err:
        verbs.METHODS["VM.getDevices"](fake_agent, vmId=vm_id)
    assert err.value.name == "noVM" and hv.lookups == 1
    assert vm_id not in fake_agent.handles


def test_add_controller_looks_the_domain_up_once(fake_agent):
    vid = str(uuid.uuid4())
    fake_agent.hv.add_vm(vid, running=False)
    fake_agent.hv.lookups = 0
    verbs.METHODS["VM.addController"](fake_agent, vmId=vid, controller=dict(SAMPLES["VM.addController"]["controller"]))
    assert fake_agent.hv.lookups == 1


# ---- files inside the configured directories --------------------------------------------------------

@pytest.fixture
def dirs(fake_agent, tmp_path):
    images, logs, outside = tmp_path / "images", tmp_path / "logs", tmp_path / "outside"
    for d in (images, logs, outside):
        d.mkdir()
    (images / "vmlinuz").write_bytes(b"k")
    (images / "initrd.gz").write_bytes(b"i")
    (outside / "secret").write_text("root only")
    os.symlink(outside / "secret", images / "link")
    os.symlink(outside / "secret", logs / "link.log")
    os.symlink(outside, logs / "sub")
    fake_agent.config = replace(fake_agent.config, image_dirs=(images,), log_dir=logs)
    return images, logs, outside


def test_files_inside_the_directories_are_accepted(fake_agent, dirs):
    images, logs, _ = dirs
    vid = str(uuid.uuid4())
    vm_verbs.create(fake_agent, vid, {**PARAMS, "kernel": str(images / "vmlinuz"),
                                      "initrd": str(images / "initrd.gz"), "serialLog": str(logs / "new.log")})
    assert fake_agent.hv.exists(vid)


@pytest.mark.parametrize("field, where", [
    ("kernel", "/etc/shadow"), ("kernel", "{images}/../outside/secret"), ("kernel", "{images}/link"),
    ("kernel", "{images}"), ("kernel", "{logs}/new.log"),
    ("initrd", "/root/.ssh/id_rsa"), ("initrd", "{images}/../../x"), ("initrd", "{images}/link"),
    ("serialLog", "/etc/passwd"), ("serialLog", "/root/new-file"), ("serialLog", "{logs}/../outside/secret"),
    ("serialLog", "{logs}/link.log"), ("serialLog", "{logs}/sub/new.log"), ("serialLog", "{images}/x.log"),
])
@pytest.mark.parametrize("verb", ["VM.create", "VM.define"])
def test_path_traversal_is_refused_naming_the_field(fake_agent, dirs, verb, field, where):
    images, logs, outside = dirs
    vid = str(uuid.uuid4())
    with pytest.raises(AgentError) as e:
        verbs.METHODS[verb](fake_agent, vmId=vid, params={**PARAMS, field: where.format(images=images, logs=logs)})
    assert e.value.name == "pathNotAllowed" and e.value.code == 316
    assert e.value.data["field"] == f"params/{field}"
    assert not fake_agent.hv.exists(vid) and fake_agent.hv.calls == []
    assert (outside / "secret").read_text() == "root only"


# ---- nothing left behind ----------------------------------------------------------------------------

def test_a_create_that_fails_after_define_undefines(fake_agent, monkeypatch):
    vid = str(uuid.uuid4())

    def broken_start(vm_id):
        raise LibvirtFailure(1, "internal error: process exited while connecting to monitor")
    monkeypatch.setattr(fake_agent.hv, "start", broken_start)
    with pytest.raises(AgentError) as e:
        vm_verbs.create(fake_agent, vid, dict(PARAMS))
    assert e.value.name == "createErr" and not fake_agent.hv.exists(vid)


@pytest.mark.parametrize("verb", ["VM.create", "VM.define"])
def test_a_verb_that_cannot_read_back_what_it_defined_undefines(fake_agent, monkeypatch, verb):
    """What happened with an unescaped portProfile: libvirt kept a domain whose XML the agent could
    not read back (error 16) -- and the domain stayed behind."""
    vid = str(uuid.uuid4())

    def unreadable(vm):
        raise AgentError("unexpected", "malformed XML")
    monkeypatch.setattr(vm_verbs, "vm_info", unreadable)
    with pytest.raises(AgentError):
        verbs.METHODS[verb](fake_agent, vmId=vid, params=dict(PARAMS))
    assert not fake_agent.hv.exists(vid)
