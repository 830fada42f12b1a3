"""Every string of every verb's params, with XML-special and control characters: a coded error
(invalidParams naming the field), or -- for the few free-text fields -- the value is escaped in the
domain XML and reads back unchanged. The live counterpart (what libvirt keeps) is in
tests/integration/vdsm_plugin/test_hostile_strings.py."""
from __future__ import annotations

import copy

import pytest

from tests.unit.vdsm_plugin.test_contract import SAMPLES, VM
from vdsm_plugin import contract, domxml, validation
from vdsm_plugin.errors import AgentError

CONTROL = ["a\u0007b", "a\nb", "ab\n", "a\u0000b", "a\u001bb", "a\u007fb", "a\u0085b"]
XML_SPECIAL = ["x'/><evil/>", 'x"/><evil/>', "a<b", "a&b", "a&amp;b", "]]>"]
# Free text: may hold XML-special characters (escaped by the builder and by libvirt), never control ones.
FREE_TEXT = ("params/cmdline", "customProperties/role")

# Samples that carry every string field the contract has, each verb once more.
RICH_NIC = {"type": "interface", "device": "vnlink", "network": "pbnet", "alias": "ua-n1",
            "macAddr": "56:6f:1a:00:00:01", "nicModel": "pv", "promisc": "blue,red",
            "specParams": {"portProfile": "prof-1"}, "customProperties": {"role": "db"}}
RICH = {
    **SAMPLES,
    "VM.create": {"vmId": VM, "params": {
        "name": "demo", "memSize": 256, "vcpus": 1, "machine": "q35", "osType": "rhel_9x64",
        "kernel": "/g/vmlinuz", "initrd": "/g/initrd.gz", "cmdline": "console=ttyS0", "serialLog": "/l/c.log",
        "customProperties": {"role": "db"},
        "devices": [RICH_NIC,
                    {"type": "hostdev", "device": "usb", "alias": "ua-u1", "source": {"nodeDev": "usb_1_4"}},
                    {"type": "hostdev", "device": "pci", "alias": "ua-p1", "source": {"nodeDev": "pci_0000_00_1f_0"}},
                    {"type": "redirdev", "device": "tcp", "alias": "ua-r1", "host": "10.0.0.5", "port": 4000},
                    {"type": "controller", "device": "usb", "model": "ehci", "index": 1, "alias": "ua-c1"}]}},
    "VM.hotplugNic": {"vmId": VM, "nic": RICH_NIC},
    "VM.hotplugHostdev": {"vmId": VM, "hostdev": {"type": "hostdev", "device": "usb", "alias": "ua-u",
                                                  "source": {"vendor": "0x136b", "product": "0x0003"}}},
    "VM.hotplugRedirdev": {"vmId": VM, "redirdev": {"type": "redirdev", "device": "tcp", "alias": "ua-r",
                                                    "host": "10.0.0.5", "port": 4000}},
}


def _strings(value, path=()):
    """(path, value) of every string leaf, and of every property name of a customProperties map."""
    if isinstance(value, dict):
        for k, v in value.items():
            if path and path[-1] == "customProperties":
                yield (*path, k, "<name>"), k
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))
    elif isinstance(value, str):
        yield path, value


def _replace(params, path, new):
    params = copy.deepcopy(params)
    if path[-1] == "<name>":
        holder = params
        for step in path[:-2]:
            holder = holder[step]
        holder[new] = holder.pop(path[-2])
        return params
    holder = params
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return params


CASES = [(verb, path) for verb in sorted(RICH) for path, _ in _strings(RICH[verb])]


def test_the_rich_samples_are_valid_and_cover_every_verb():
    assert set(RICH) == set(contract.verbs())
    for verb, params in RICH.items():
        validation.check_params(verb, params)


def _field(path):
    return "/".join(str(p) for p in path if p != "<name>")


@pytest.mark.parametrize("verb, path", CASES, ids=[f"{v}:{_field(p)}" for v, p in CASES])
def test_control_characters_are_refused_in_every_string(verb, path):
    for bad in CONTROL:
        with pytest.raises(AgentError) as e:
            validation.check_params(verb, _replace(RICH[verb], path, bad))
        assert e.value.name == "invalidParams", (bad, e.value)


@pytest.mark.parametrize("verb, path", CASES, ids=[f"{v}:{_field(p)}" for v, p in CASES])
def test_xml_special_characters_are_refused_or_escaped(verb, path):
    field = _field(path)
    for bad in XML_SPECIAL:
        params = _replace(RICH[verb], path, bad)
        if not field.endswith(FREE_TEXT) or path[-1] == "<name>":
            with pytest.raises(AgentError) as e:
                validation.check_params(verb, params)
            assert e.value.name == "invalidParams", (bad, e.value)
            continue
        validation.check_params(verb, params)
        if verb == "VM.create" and field.startswith("params/c"):   # in the domain XML: text, escaped
            dom = domxml.parse(domxml.build_domain(VM, {**params["params"], "devices": []}))
            assert dom.find(".//evil") is None
            got = dom.findtext("os/cmdline") if field == "params/cmdline" else \
                domxml.get_metadata(dom, "customProperties")["role"]
            assert got == bad


def test_port_profile_injection_is_refused():
    """The measured attack: libvirt copied `x'/><evil/>` into the domain without escaping it."""
    params = _replace(RICH["VM.hotplugNic"], ("nic", "specParams", "portProfile"), "x'/><evil/>")
    with pytest.raises(AgentError) as e:
        validation.check_params("VM.hotplugNic", params)
    assert e.value.data["field"] == "nic/specParams/portProfile"


def test_events_after_is_bounded():
    with pytest.raises(AgentError) as e:
        validation.check_params("Host.getEvents", {"after": 1e30})
    assert e.value.name == "invalidParams" and e.value.data["field"] == "after"


def test_the_patterns_section_is_what_the_definitions_use():
    patterns = contract.patterns()
    vm = contract.definitions()["vmParams"]["properties"]
    assert vm["kernel"]["pattern"] == vm["serialLog"]["pattern"] == patterns["hostPath"]
    assert vm["cmdline"]["pattern"] == patterns["text"]
    nic = contract.definitions()["nic"]["properties"]
    assert nic["specParams"]["properties"]["portProfile"]["pattern"] == patterns["token"]
