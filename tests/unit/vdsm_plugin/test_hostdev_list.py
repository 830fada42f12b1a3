"""Host.hostdevListByCaps with `names`: the devices a hostdev_added / hostdev_removed event names, looked
up one by one instead of listing the host's every device -- the same items the whole list has for them."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from lxml import etree

from vdsm_plugin import validation
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import host as host_verbs

FIXTURES = Path(__file__).parent / "fixtures"
USB_BY_IDS = """<hostdev mode='subsystem' type='usb' managed='no'><source><vendor id='0x{vendor}'/>
<product id='0x{product}'/></source><alias name='ua-u1'/></hostdev>"""


@pytest.fixture
def agent(fake_agent):
    fake_agent.hv.nodedevs = [p.read_text() for p in sorted((FIXTURES / "nodedev").glob("*.xml"))]
    return fake_agent


def _hold(agent, vendor: str, product: str) -> str:
    """A shut-off domain whose definition holds a USB device by vendor/product alone."""
    vm_id = str(uuid.uuid4())
    agent.hv.add_vm(vm_id, running=False)
    agent.hv.doms[vm_id].find("devices").append(etree.fromstring(USB_BY_IDS.format(vendor=vendor, product=product)))
    return vm_id


def _names(answer) -> list[str]:
    return [d["name"] for d in answer["devices"]]


def test_names_lists_only_those_devices_of_caps_one_lookup_each(agent):
    answer = host_verbs.hostdev_list_by_caps(agent, ["usb_device"], ["usb_2_2", "usb_9_9", "pci_0000_02_00_0"])
    assert _names(answer) == ["usb_2_2"]        # usb_9_9: no such device; the PCI one: not of caps
    assert agent.hv.nodedev_lookups == 3
    assert validation.result_errors("Host.hostdevListByCaps", answer) == []


def test_a_name_the_host_no_longer_has_answers_no_device(agent):
    assert host_verbs.hostdev_list_by_caps(agent, ["usb_device"], ["usb_7_7"]) == {"devices": []}


@pytest.mark.parametrize("vendor, product, holder", [
    ("1050", "0407", True),     # one device has these ids: the definition holds it
    ("136b", "0003", False),    # two have them: it holds neither, as in the whole list
])
def test_the_named_answer_is_the_whole_lists_for_those_names(agent, vendor, product, holder):
    vm_id = _hold(agent, vendor, product)
    whole = host_verbs.hostdev_list_by_caps(agent, ["usb_device", "pci"])["devices"]
    names = ["usb_1_4_2", "usb_2_2", "pci_0000_02_00_0"]
    named = host_verbs.hostdev_list_by_caps(agent, ["usb_device", "pci"], names)["devices"]
    assert named == [d for d in whole if d["name"] in names]
    held = [d["name"] for d in named if d["attachedTo"] == vm_id]
    assert held == (["usb_2_2"] if holder else [])


@pytest.mark.parametrize("names", [["usb_1<x"], ["usb_1_4", "usb_1_4"], [""], ["u" * 65]])
def test_bad_names_are_invalid_params(names):
    with pytest.raises(AgentError) as e:
        validation.check_params("Host.hostdevListByCaps", {"caps": ["usb_device"], "names": names})
    assert e.value.name == "invalidParams" and "names" in str(e.value)


def test_the_libvirt_test_driver_looks_devices_up_by_name():
    pytest.importorskip("libvirt")
    from vdsm_plugin.virt import Hypervisor

    hv = Hypervisor(f"test://{(FIXTURES / 'libvirt_test_node.xml').resolve()}")
    try:
        xmls = hv.nodedev_xmls(["usb_device"], ["usb_1_4_2", "usb_9_9", "pci_0000_02_00_0"])
    finally:
        hv.close()
    assert [etree.fromstring(x.encode()).findtext("name") for x in xmls] == ["usb_1_4_2", "pci_0000_02_00_0"]
