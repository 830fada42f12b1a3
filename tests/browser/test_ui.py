"""The web UI end to end: Chromium, the engine over HTTP, a real agent, libvirtd and the tiny guest.
One booted guest for the module (the hot-plug flows), plus two VMs with no OS: one that never releases
a NIC (the unplug stays in flight) and a running Windows XP VM (no NIC hot plug)."""
from __future__ import annotations

import re
import uuid

import libvirt
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DOCS, login
from tests.integration.engine.rest import add_nic, new_vm, ok
from tests.integration.guest import wait_for_serial

TAG = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def vms(api, host, guest, tmp_path_factory):
    serial = tmp_path_factory.mktemp("guest") / "console.log"
    booted = new_vm(api, f"ui-guest-{TAG}", guest, serial)
    silent = new_vm(api, f"ui-silent-{TAG}")
    add_nic(api, silent, "slow")
    xp = new_vm(api, f"ui-xp-{TAG}", os_type="windows_xp")
    add_nic(api, xp, "xpnic", active=False)
    other = new_vm(api, f"ui-other-{TAG}", project_id="other")
    for vm in (booted, silent, xp):
        assert ok(api.post(f"/api/vms/{vm['id']}/start", json={}))["status"] == "up"
    wait_for_serial(serial, "PLUGBOARD-GUEST-READY", timeout=90)
    yield {"booted": booted, "silent": silent, "xp": xp, "other": other, "serial": serial}
    for vm in (booted, silent, xp):
        api.post(f"/api/vms/{vm['id']}/stop", json={})


def tab(page, engine_url, vm, name):
    page.goto(f"{engine_url}/ui/vms/{vm['id']}/{name}")


def nic_row(page, name):
    return page.locator(f"tr[data-nic='{name}']")


def test_vms_tab_lists_every_vm_with_its_status_and_filters(admin_page, engine_url, vms):
    page = admin_page
    page.goto(f"{engine_url}/ui/vms")
    for key in ("booted", "silent", "xp", "other"):
        expect(page.locator(f"tr[data-vm='{vms[key]['name']}']")).to_be_visible()
    row = page.locator(f"tr[data-vm='{vms['xp']['name']}']")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "up")
    expect(row).to_contain_text("Windows XP")
    expect(row).to_contain_text("lab")
    expect(row.get_by_role("button", name="Run")).to_be_disabled()
    expect(row.get_by_role("button", name="Stop")).to_be_enabled()
    page.get_by_label("Filter").fill(f"ui-xp-{TAG}")
    expect(page.locator("tr[data-vm]")).to_have_count(1)
    page.get_by_label("Filter").fill(TAG)
    expect(page.locator("tr[data-vm]")).to_have_count(4)
    page.screenshot(path=str(DOCS / "ui-vms-tab.png"))


def test_new_nic_with_activate_checked_plugs_it_into_the_guest(admin_page, engine_url, vms):
    page = admin_page
    tab(page, engine_url, vms["booted"], "nics")
    page.get_by_role("button", name="New NIC").click()
    dialog = page.locator("#pb-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Activate")).to_be_checked()      # seed 004: checked by default
    dialog.get_by_label("Name").fill("uinic")
    dialog.get_by_label("Network").fill("pbbr0")
    dialog.get_by_role("button", name="Add NIC").click()
    expect(dialog).to_be_hidden()
    expect(nic_row(page, "uinic")).to_have_attribute("data-status", "plugged")
    mac = nic_row(page, "uinic").locator("td[data-label='MAC']").inner_text().strip()
    wait_for_serial(vms["serial"], rf"PB-NETS:.*{mac}", timeout=60)


def test_deactivate_unplugs_it_and_the_guest_loses_it(admin_page, engine_url, vms):
    page = admin_page
    tab(page, engine_url, vms["booted"], "nics")
    row = nic_row(page, "uinic")
    mac = row.locator("td[data-label='MAC']").inner_text().strip()
    _, plugged_at = wait_for_serial(vms["serial"], rf"PB-NETS:.*{mac}", timeout=5)
    row.get_by_role("button", name="Deactivate").click()
    expect(row).to_have_attribute("data-status", re.compile("unplugging|unplugged"))
    expect(row).to_have_attribute("data-status", "unplugged", timeout=40_000)
    wait_for_serial(vms["serial"], rf"PB-NETS:(?!.*{mac})[^\n]*$", timeout=60, after_offset=plugged_at)
    expect(row.get_by_role("button", name="Activate", exact=True)).to_be_enabled()


def test_a_slow_unplug_shows_a_spinner_its_time_and_a_warning_then_finishes(admin_page, engine_url, vms, libvirt_uri):
    page = admin_page
    tab(page, engine_url, vms["silent"], "nics")
    row = nic_row(page, "slow")
    expect(row).to_have_attribute("data-status", "plugged")
    row.get_by_role("button", name="Deactivate").click()
    expect(row).to_have_attribute("data-status", "unplugging")
    expect(row.locator(".pb-spinner")).to_be_visible()
    expect(row.locator(".pb-elapsed")).to_have_text(re.compile(r"^\d+ s$"))
    expect(row.locator(".pb-slow")).to_be_visible(timeout=15_000)
    expect(row.get_by_role("button", name="Activate", exact=True)).to_be_disabled()      # in flight
    page.screenshot(path=str(DOCS / "ui-nics-unplugging.png"))
    conn = libvirt.open(libvirt_uri)       # a reset releases the device, as in the agent's own tests
    try:
        conn.lookupByUUIDString(vms["silent"]["id"]).reset()
    finally:
        conn.close()
    expect(row).to_have_attribute("data-status", "unplugged", timeout=40_000)


def test_windows_xp_running_shows_activate_disabled_with_the_reason(admin_page, engine_url, vms):
    page = admin_page
    tab(page, engine_url, vms["xp"], "nics")
    button = nic_row(page, "xpnic").get_by_role("button", name="Activate", exact=True)
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("title", re.compile("does not support NIC hot plug; stop the VM first"))
    expect(button).to_have_accessible_description(re.compile("does not support NIC hot plug"))
    page.get_by_role("button", name="New NIC").click()
    expect(page.locator("#pb-dialog").get_by_label("Activate")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(page.locator("#pb-dialog")).to_be_hidden()


def test_usb_controllers_are_added_only_while_the_vm_is_down(admin_page, engine_url, vms):
    page = admin_page
    tab(page, engine_url, vms["xp"], "controllers")
    add = page.get_by_role("button", name="Add USB controllers")
    expect(add).to_be_disabled()
    expect(add).to_have_attribute("title", re.compile("stop the VM first"))
    page.locator("#vm-stop").click()
    expect(page.locator(".pb-vm-header")).to_have_attribute("data-vm-status", "down", timeout=30_000)
    expect(add).to_be_enabled()
    add.click()
    dialog = page.locator("#pb-dialog")
    dialog.get_by_label("Type").select_option("ehci")
    dialog.get_by_label("Count").fill("2")
    dialog.get_by_role("button", name="Add").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("tr[data-controller]")).to_have_count(2)
    expect(page.locator("tr[data-controller]").first).to_contain_text("at next start")


def test_a_member_sees_only_its_projects_vms(browser, engine_url, vms):
    page = login(browser, engine_url, "mel")
    try:
        expect(page.locator(f"tr[data-vm='{vms['other']['name']}']")).to_be_visible()
        expect(page.locator(f"tr[data-vm='{vms['booted']['name']}']")).to_have_count(0)
        expect(page.get_by_role("link", name="Hosts")).to_have_count(0)
        response = page.goto(f"{engine_url}/ui/vms/{vms['booted']['id']}/nics")
        assert response is not None and response.status == 404
        assert page.goto(f"{engine_url}/ui/hosts").status == 403
    finally:
        page.context.close()


def test_a_form_posted_without_the_csrf_token_is_refused(admin_page, engine_url, vms):
    page = admin_page
    page.goto(f"{engine_url}/ui/vms")
    response = page.request.post(f"{engine_url}/ui/vms/{vms['booted']['id']}/stop", form={"x": "1"})
    assert response.status == 403 and "security token" in response.text()
    response = page.request.post(f"{engine_url}/ui/vms/{vms['booted']['id']}/stop",
                                 headers={"X-CSRF-Token": "forged"})
    assert response.status == 403
    expect(page.locator(f"tr[data-vm='{vms['booted']['name']}'] [data-status]")).to_have_attribute("data-status", "up")


def test_every_control_has_a_label_and_the_keyboard_works(admin_page, engine_url, vms):
    page = admin_page
    tab(page, engine_url, vms["booted"], "nics")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, button, a[href]')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.outerHTML)""")
    assert unlabelled == []
    page.locator("#nic-new").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#pb-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_add_host_device_dialog_and_the_hosts_device_inventory(admin_page, engine_url, vms, engine_parts, host, api):
    """This machine has no USB devices to give: the inventory is seeded through the dao (three made-up
    keys on the agent's host, one held by a stopped VM through the API); no device is attached for real
    (the test host tier does that). The monitor is paused meanwhile: its reconciliation would find the
    made-up keys gone from the host."""
    from engine.dao import host_devices

    def usb(port, serial, allowed=True, product="Cruzer Blade"):
        return {"name": f"usb_9_{port[-1]}", "capability": "usb_device", "vendorId": "0781", "productId": "5567",
                "vendorName": "SanDisk Corp.", "productName": product, "portPath": port, "serial": serial,
                "allowed": allowed, "bus": 9, "device": int(port[-1]) + 1}

    monitor = engine_parts["monitor"]
    monitor.stop(timeout=5)
    try:
        with engine_parts["sessions"].begin() as s:
            free, banned, held = host_devices.sync(s, host["id"], [
                usb("9-1", f"UI{TAG}"), usb("9-2", f"NO{TAG}", allowed=False, product="Token"),
                usb("9-3", f"HD{TAG}", product="Held key")], capabilities=("usb_device",)).added
        assert api.post(f"/api/vms/{vms['other']['id']}/hostdevs", json={"host_device_id": held}).status_code == 201

        page = admin_page
        tab(page, engine_url, vms["silent"], "hostdevs")
        page.get_by_role("button", name="Add host device").click()
        dialog = page.locator("#pb-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_label("Required at start")).not_to_be_checked()
        row = dialog.locator(f"tr[data-choice='{free}']")
        expect(row).to_contain_text("Cruzer Blade")
        expect(row).to_contain_text("SanDisk Corp.")
        expect(row).to_contain_text("9-1")
        expect(row).to_contain_text(f"UI{TAG}")
        expect(row.get_by_role("radio")).to_be_enabled()
        taken = dialog.locator(f"tr[data-choice='{held}']")
        expect(taken).to_contain_text(f"used by VM {vms['other']['name']}")
        expect(taken.get_by_role("radio")).to_be_disabled()
        barred = dialog.locator(f"tr[data-choice='{banned}']")
        expect(barred).to_contain_text("unavailable: not on the host's whitelist")
        expect(barred.get_by_role("radio")).to_be_disabled()
        row.get_by_label("Cruzer Blade").check()        # the product names the radio; keyboard reaches it
        expect(row.get_by_role("radio")).to_be_checked()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        page.goto(f"{engine_url}/ui/hosts")
        page.get_by_role("link", name="Devices of lab").click()
        expect(page.locator("tr[data-device]")).not_to_have_count(0)      # the agent's PCI functions too
        page.get_by_label("Kind").select_option("usb_device")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("tr[data-device]")).to_have_count(3)          # this machine has no USB devices
        holder = page.locator(f"tr[data-device='{held}']")
        expect(holder).to_have_attribute("data-status", "allocated")
        expect(holder.get_by_role("link", name=vms["other"]["name"])).to_be_visible()
        expect(page.locator(f"tr[data-device='{banned}']")).to_have_attribute("data-allowed", "false")
        expect(page.locator(f"tr[data-device='{free}']")).to_have_attribute("data-status", "available")
    finally:
        monitor.start()


def test_the_hosts_page_gates_maintenance_by_the_vms_running_there(admin_page, engine_url, vms):
    """The lab host runs the module's VMs: its Maintenance button is disabled and says which VMs to
    stop first; the refusal the engine would give is the button's description."""
    page = admin_page
    page.goto(f"{engine_url}/ui/hosts")
    row = page.locator("tr[data-host='lab']")
    button = row.get_by_role("button", name="Maintenance")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("data-reasons", "HOST_RUNS_VMS")
    expect(button).to_have_accessible_description(re.compile(rf"{vms['booted']['name']}.*stop them first"))
    expect(row.get_by_role("button", name="Activate")).to_have_count(0)
