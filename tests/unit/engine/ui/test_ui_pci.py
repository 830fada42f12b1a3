"""PCI passthrough in the web UI: the PCI part of a host's device inventory, and a VM's PCI devices
sub-tab (attach by alias and count, the attachments with host and guest addresses, detach), gated by
the engine's canDo."""
from __future__ import annotations

import re

import pytest

from tests.unit.engine.ui.test_ui_routes import app, logged_in  # noqa: F401  (the app fixture)


def pci(address, product_id="10c9", *, group, allowed=True, driver="igb", product="82576 Gigabit Network Connection"):
    slot = address.replace(":", "_").replace(".", "_")
    return {"name": f"pci_{slot}", "capability": "pci", "vendorId": "8086", "productId": product_id,
            "vendorName": "Intel Corporation", "productName": product, "pciAddress": address,
            "iommuGroup": group, "driver": driver, "allowed": allowed}


@pytest.fixture
def lab(sessions, make_host):
    """A host with two functions of one card in IOMMU group 12 (one held by a VM), a function alone in
    group 13, one off the whitelist (group 14), and a PCIe port; aliases a1 (the card) and b1."""
    from engine.dao import host_devices, pci_aliases
    from engine.pci_aliases import Alias

    host = make_host("lab1")
    with sessions.begin() as s:
        pci_aliases.replace_all(s, [Alias("a1", "8086", "10c9"), Alias("b1", "8086", "10fb")])
        ids = host_devices.sync(s, host.id, [
            pci("0000:03:00.0", group=12), pci("0000:03:00.1", group=12), pci("0000:04:00.0", group=13),
            pci("0000:05:00.0", "10fb", group=14, allowed=False, driver="ixgbe", product="82599ES SFP+"),
            pci("0000:00:1c.0", "a110", group=15, driver="pcieport", product="PCI Express Root Port")]).added
    return {"host": host, "ids": dict(zip(("f0", "f1", "alone", "banned", "port"), ids))}


def hold(sessions, make_vm, hd_id, name="holder"):
    from engine.dao import host_devices, pci_devices

    vm = make_vm(name, status="down")
    with sessions.begin() as s:
        assert host_devices.claim(s, hd_id, vm.id) and host_devices.allocate(s, hd_id, vm.id)
        pci_devices.settle_groups(s, host_devices.get(s, hd_id).host_id)
    return vm


def row(page, attr, value):
    found = re.search(rf'<tr[^>]*{attr}="{re.escape(str(value))}".*?</tr>', page, re.S)
    assert found, page[:3000]
    return found.group(0)


def test_the_host_inventory_lists_pci_functions_with_address_ids_group_driver_aliases_and_holder(
        app, lab, sessions, make_vm):  # noqa: F811
    holder = hold(sessions, make_vm, lab["ids"]["f0"])
    client, _, _ = logged_in(app)
    page = client.get(f"/ui/hosts/{lab['host'].id}/devices").text
    assert 'aria-labelledby="pci-devices"' in page and ">PCI devices</h2>" in page
    held = row(page, "data-address", "0000:03:00.0")
    assert 'data-status="allocated"' in held and 'data-iommu-group="12"' in held
    assert "82576 Gigabit Network Connection" in held and "Intel Corporation" in held
    assert "<code>10c9</code>" in held and "<code>8086</code>" in held and "<code>igb</code>" in held
    assert f'href="/ui/vms/{holder.id}/pcidevs">holder</a>' in held
    assert re.search(r'data-label="Aliases">a1<', held)
    sibling = row(page, "data-address", "0000:03:00.1")
    assert 'data-status="unavailable"' in sibling and "IOMMU group 12 is held through 0000:03:00.0" in sibling
    banned = row(page, "data-address", "0000:05:00.0")
    assert 'data-allowed="false"' in banned and "not on the host&#39;s whitelist" in banned and \
        re.search(r'data-label="Aliases">b1<', banned)
    assert 'data-status="available"' in row(page, "data-address", "0000:04:00.0")
    assert re.search(r'data-label="Aliases">—<', row(page, "data-address", "0000:00:1c.0"))
    # Filtered to the unavailable ones, the sibling still says why (the holder is read all the same).
    only = client.get(f"/ui/hosts/{lab['host'].id}/devices?capability=pci&status=unavailable").text
    assert only.count("data-device=") == 2 and ">USB devices</h2>" not in only
    assert "held through 0000:03:00.0" in row(only, "data-address", "0000:03:00.1")
    usb_only = client.get(f"/ui/hosts/{lab['host'].id}/devices?capability=usb_device").text
    assert ">PCI devices</h2>" not in usb_only and "No USB devices." in usb_only


def test_the_pci_inventory_is_for_admins(app, lab, make_vm):  # noqa: F811
    client, _, _ = logged_in(app, "mel")
    assert client.get(f"/ui/hosts/{lab['host'].id}/devices?capability=pci").status_code == 403


# ---- a VM's PCI devices sub-tab and the Attach PCI devices dialog --------------------------------------

@pytest.fixture
def fake_app(sessions):
    """The engine's app with FakeHosts: a running VM's attach and detach are live plugs on a fake agent."""
    from engine.app import create_app
    from tests.unit.engine.fakehost import FakeHosts
    from tests.unit.engine.ui.test_ui_routes import add_user

    add_user(sessions, "ada")
    add_user(sessions, "mel", role="member", project="other")
    hosts = FakeHosts()
    app_ = create_app({"sessions": sessions, "hosts": hosts, "pcie_ports": 4, "TESTING": True})
    app_.config["fake_hosts"] = hosts
    return app_


def running_q35(sessions, make_vm, host, name="runner", *, ports=4, project_id="default"):
    """A q35 VM up on `host` (its domain on the fake agent), started with `ports` spare root ports."""
    vm = make_vm(name, status="up", host=host, machine="q35", project_id=project_id, pcie_ports_base=ports)
    return vm


def tab_of(client, vm):
    resp = client.get(f"/ui/vms/{vm.id}/pcidevs")
    assert resp.status_code == 200, resp.text[:2000]
    return resp.text


def button(page, button_id):
    found = re.search(rf'<button[^>]*id="{button_id}"[^>]*>', page)
    assert found, page[:3000]
    return found.group(0)


def test_attach_by_alias_and_count_lists_host_and_guest_addresses_then_detach_gives_it_back(
        fake_app, lab, sessions, make_vm):
    from engine.dao import host_devices

    fake = fake_app.config["fake_hosts"]["lab1"]
    vm = running_q35(sessions, make_vm, lab["host"])
    fake.add_domain(vm.id, vm.name)
    client, token, _ = logged_in(fake_app)
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    page = tab_of(client, vm)
    assert 'id="tab-pcidevs"' in page and ">PCI devices<" in page and "No PCI devices." in page
    assert "disabled" not in button(page, "pci-attach") and "Free PCIe slots: 4" in page

    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers=headers, data={"alias": "a1", "count": "2"})
    assert resp.status_code == 200 and "2 PCI devices of alias a1 attached." in resp.text, resp.text
    assert "next start" not in resp.text and resp.headers["HX-Trigger"] == "pb-refresh, pb-done"
    assert len(fake.sent("VM.hotplugHostdev")) == 2

    page = tab_of(client, vm)
    first = row(page, "data-pci", "0000:03:00.0")
    assert 'data-status="plugged"' in first and 'data-origin="attachment"' in first
    assert "<code>pci_0000_03_00_0</code>" in first and "on lab1" in first and "IOMMU group 12" in first
    guest = re.search(r'data-label="Guest address"><code>([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])</code>', first)
    assert guest, first
    assert "82576 Gigabit Network Connection" in first and "<code>10c9</code>" in first and ">a1" in first
    assert "data-pci=\"0000:03:00.1\"" in page
    with sessions() as s:
        assert host_devices.get(s, lab["ids"]["f0"]).status == "allocated"

    detach = button(first, "pci-detach-0000-03-00-0")
    assert "disabled" not in detach and 'hx-confirm="Detach PCI device 0000:03:00.0 from runner?"' in detach
    dev_id = re.search(r'hx-post="/ui/vms/[^/]+/pcidevs/([^/]+)/detach"', detach).group(1)
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs/{dev_id}/detach", headers=headers)
    assert resp.status_code == 200 and "PCI device detached." in resp.text, resp.text
    assert len(fake.sent("VM.hotunplugHostdev")) == 1
    page = tab_of(client, vm)
    assert 'data-pci="0000:03:00.0"' not in page and 'data-pci="0000:03:00.1"' in page
    with sessions() as s:
        assert host_devices.get(s, lab["ids"]["f0"]).status in ("available", "unavailable")
        assert host_devices.get(s, lab["ids"]["f0"]).vm_id is None
    # The USB host devices tab does not list PCI functions; the General tab counts them apart.
    assert "0000:03:00.1" not in client.get(f"/ui/vms/{vm.id}/hostdevs").text
    general = client.get(f"/ui/vms/{vm.id}/general").text
    assert re.search(r">PCI devices</dt><dd[^>]*>1<", general) and re.search(r">Host devices</dt><dd[^>]*>0<", general)


def test_the_dialog_lists_the_aliases_with_the_commands_verdict_and_a_count(fake_app, lab, sessions, make_vm):
    vm = running_q35(sessions, make_vm, lab["host"])
    client, _, _ = logged_in(fake_app)
    dialog = client.get(f"/ui/vms/{vm.id}/pcidevs/new", headers={"HX-Request": "true"}).text
    a1 = row(dialog, "data-alias", "a1")
    assert 'data-selectable="true"' in a1 and re.search(r'<input[^>]*type="radio"[^>]*value="a1"[^>]*checked', a1)
    assert "<code>8086:10c9</code>" in a1 and 'data-label="Free">3<' in a1
    b1 = row(dialog, "data-alias", "b1")        # its one device is off the whitelist: none free
    assert 'data-selectable="false"' in b1 and re.search(r'<input[^>]*value="b1"[^>]*disabled', b1)
    assert "Host lab1 has 0 free PCI device(s) for 1 × b1" in b1 and 'data-label="Free">0<' in b1
    assert re.search(r'<input id="pci-count" name="count" type="number" min="1" max="16" value="1"', dialog)
    assert '<label class="pf-v6-c-form__label" for="pci-count">Count</label>' in dialog
    assert 'name="csrf_token"' in dialog and "plugged into it now" in dialog
    for i in (1, 2):
        assert f'<label for="pci-alias-{i}">' in dialog
    # Every alias refused (a1's devices held, 03:00.1 with its group): the Attach button is disabled.
    for key in ("f0", "alone"):
        hold(sessions, make_vm, lab["ids"][key], name=f"holder-{key}")
    dialog = client.get(f"/ui/vms/{vm.id}/pcidevs/new", headers={"HX-Request": "true"}).text
    assert 'data-selectable="true"' not in dialog
    assert re.search(r'<button[^>]*id="dialog-submit"[^>]*disabled', dialog)


def test_a_member_attaches_by_alias_sees_names_only_and_no_inventory(fake_app, lab, sessions, make_vm):
    vm = make_vm("mine", status="down", project_id="other")
    client, token, _ = logged_in(fake_app, "mel")
    page = tab_of(client, vm)
    assert "disabled" not in button(page, "pci-attach") and "Free PCIe slots" not in page
    dialog = client.get(f"/ui/vms/{vm.id}/pcidevs/new", headers={"HX-Request": "true"}).text
    assert 'data-alias="a1"' in dialog and "8086:10c9" not in dialog and "Devices (vendor:product)" not in dialog
    assert "go into its definition" in dialog
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers={"HX-Request": "true", "X-CSRF-Token": token},
                       data={"alias": "a1", "count": "1"})
    assert resp.status_code == 200 and "1 PCI device of alias a1 attached." in resp.text, resp.text
    assert "applied at the VM&#39;s next start" in resp.text
    page = tab_of(client, vm)
    assert "given at start" in page and 'data-status="plugged"' in page
    assert "disabled" not in button(page, r"pci-detach-[0-9a-f-]+")
    theirs = make_vm("theirs", status="down")
    assert client.get(f"/ui/vms/{theirs.id}/pcidevs").status_code == 404
    assert client.get(f"/ui/vms/{theirs.id}/pcidevs/new", headers={"HX-Request": "true"}).status_code == 404


def test_refusals_are_shown_where_the_action_was_taken_with_every_reason(fake_app, lab, sessions, make_vm):
    vm = running_q35(sessions, make_vm, lab["host"])
    fake_app.config["fake_hosts"]["lab1"].add_domain(vm.id, vm.name)
    client, token, _ = logged_in(fake_app)
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers=headers, data={"alias": "b1", "count": "1"})
    assert resp.status_code == 409 and "PCI_DEVICES_SHORT" in resp.text and 'role="alert"' in resp.text
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers=headers, data={"alias": "zz", "count": "1"})
    assert resp.status_code in (400, 409) and "PCI_ALIAS_UNKNOWN" in resp.text
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers=headers, data={"alias": "a1", "count": "two"})
    assert resp.status_code == 400 and "INVALID_FIELD" in resp.text
    assert client.post(f"/ui/vms/{vm.id}/pcidevs", headers=headers, data={"count": "1"}).status_code == 400
    assert client.post(f"/ui/vms/{vm.id}/pcidevs/nope/detach", headers=headers).status_code == 404
    # Without the CSRF token nothing runs.
    assert client.post(f"/ui/vms/{vm.id}/pcidevs", data={"alias": "a1", "count": "1"}).status_code == 403
    assert client.post(f"/ui/vms/{vm.id}/pcidevs/x/detach", headers={"X-CSRF-Token": "forged"}).status_code == 403


def test_the_buttons_follow_the_canDo_no_free_pcie_slot_and_a_detach_in_flight(fake_app, lab, sessions, make_vm):
    from engine.dao import devices

    full = running_q35(sessions, make_vm, lab["host"], "full", ports=0)
    client, token, _ = logged_in(fake_app)
    page = tab_of(client, full)
    attach = button(page, "pci-attach")
    assert "disabled" in attach and 'data-reasons="NO_FREE_PCIE_PORT"' in attach and "Free PCIe slots: 0" in page
    moving = make_vm("moving", status="powering_up", host=lab["host"], machine="q35")
    assert 'data-reasons="VM_STATUS_ILLEGAL"' in button(tab_of(client, moving), "pci-attach")

    vm = make_vm("cold", status="down", machine="q35")
    resp = client.post(f"/ui/vms/{vm.id}/pcidevs", headers={"HX-Request": "true", "X-CSRF-Token": token},
                       data={"alias": "a1", "count": "1"})
    assert resp.status_code == 200, resp.text
    with sessions.begin() as s:
        (dev,) = [d for d in devices.list_for_vm(s, vm.id) if d.device == "pci"]
        dev.plug_state = "unplugging"
    page = tab_of(client, vm)
    detach = button(page, r"pci-detach-[0-9a-f-]+")
    assert "disabled" in detach and 'data-reasons="DEVICE_IN_FLIGHT"' in detach
    assert 'data-status="unplugging"' in page and 'data-every="1s"' in page     # polled fast while in flight


def test_the_canDo_endpoint_answers_pci_attach_and_a_members_detach(fake_app, lab, sessions, make_vm):
    """GET /api/vms/{id}/allowed -- what the buttons read -- names both PCI actions; a member may attach
    and detach by alias while raw host-device actions stay an admin's."""
    from engine.commands import pci_attach
    from engine.dao import pci_aliases
    from tests.unit.engine.tokens import authenticated, issue_token

    vm = make_vm("mine", status="down", project_id="other", machine="q35")
    pci_attach.execute(sessions, fake_app.config["hosts"], pci_attach.Params(vm.id, "a1", 1))
    member = authenticated(fake_app.test_client(), issue_token(sessions, "mel2", "member", "other"))
    answer = member.get(f"/api/vms/{vm.id}/allowed").get_json()
    assert answer["vm"]["pci_attach"] == {"allowed": True, "reasons": []}
    ((dev_id, actions),) = answer["devices"].items()
    assert actions["detach"]["allowed"] is True and actions["remove"]["allowed"] is False
    with sessions.begin() as s:
        pci_aliases.replace_all(s, [])
    answer = member.get(f"/api/vms/{vm.id}/allowed").get_json()
    assert [r["code"] for r in answer["vm"]["pci_attach"]["reasons"]] == ["PCI_ALIAS_UNKNOWN"]
    assert "configured: none" in answer["vm"]["pci_attach"]["reasons"][0]["message"]
