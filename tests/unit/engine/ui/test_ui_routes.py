"""The web UI's routes with Flask's test client: login and logout, the session cookie's flags, CSRF,
the browser redirect of GET /, tenancy, gating from the engine's canDo, live regions and actions."""
from __future__ import annotations

import os
import re
import secrets
import stat
from unittest import mock

import pytest

from engine import credentials
from engine.app import create_app
from engine.dao import accounts
from engine.dao.models import utcnow
from engine.ui import secret

PASSWORD = "s3cret-pass"


def add_user(sessions, name, role="admin", project="default", password=PASSWORD):
    with sessions.begin() as s:
        if accounts.get_project(s, project) is None:
            accounts.add_project(s, project)
        user = accounts.add_user(s, name, credentials.hash_password(password))
        accounts.set_membership(s, user, project, role)


@pytest.fixture
def app(sessions):
    add_user(sessions, "ada")
    add_user(sessions, "mel", role="member", project="other")
    return create_app({"sessions": sessions, "hosts": None, "TESTING": True})


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def logged_in(app, user="ada", password=PASSWORD):
    client = app.test_client()
    token = csrf_of(client.get("/ui/login").text)
    resp = client.post("/ui/login", data={"username": user, "password": password, "csrf_token": token})
    return client, token, resp


def test_a_browser_asking_for_html_at_root_goes_to_the_ui_and_api_clients_keep_the_version_document(app):
    client = app.test_client()
    assert client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}).status_code == 302
    for accept in (None, "application/json", "*/*"):
        resp = client.get("/", headers={"Accept": accept} if accept else {})
        assert resp.status_code == 200 and "versions" in resp.get_json()


def test_pages_need_a_login_and_htmx_requests_are_told_where_to_go(app):
    client = app.test_client()
    resp = client.get("/ui/vms")
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/ui/login?next=/ui/vms")
    resp = client.get("/ui/vms/table", headers={"HX-Request": "true"})
    assert resp.status_code == 401 and resp.headers["HX-Redirect"].startswith("/ui/login")


def test_login_sets_an_httponly_samesite_cookie_and_logout_ends_it(app):
    client, token, resp = logged_in(app)
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/vms"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("plugboard_ui=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie           # plain http here; over https the flag is set
    assert client.get("/ui/vms").status_code == 200
    assert client.post("/ui/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/ui/vms").status_code == 303


def test_the_cookie_is_secure_over_https(app):
    client = app.test_client()
    token = csrf_of(client.get("/ui/login", base_url="https://localhost").text)
    resp = client.post("/ui/login", base_url="https://localhost",
                       data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    assert "Secure" in resp.headers["Set-Cookie"]


def test_a_wrong_password_or_unknown_user_is_refused_alike(app):
    for user, password in (("ada", "nope"), ("nobody", PASSWORD)):
        _, _, resp = logged_in(app, user, password)
        assert resp.status_code == 401 and "Wrong user name or password" in resp.text


def test_login_never_redirects_off_site(app):
    client = app.test_client()
    token = csrf_of(client.get("/ui/login").text)
    resp = client.post("/ui/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token,
                                          "next": "//evil.example/x"})
    assert resp.headers["Location"] == "/ui/vms"


def test_unsafe_requests_without_the_csrf_token_are_refused(app, make_vm):
    vm = make_vm(status="down")
    client, token, _ = logged_in(app)
    assert client.post("/ui/vms", data={"name": "x"}).status_code == 403
    assert client.post(f"/ui/vms/{vm.id}/start", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert app.test_client().post("/ui/login", data={"username": "ada", "password": PASSWORD}).status_code == 403


def test_the_native_api_does_not_take_the_ui_cookie(app):
    client, _, _ = logged_in(app)
    assert client.get("/api/vms").status_code == 401


def test_a_password_change_ends_the_sessions_made_with_the_old_one(app, sessions):
    client, _, _ = logged_in(app)
    with sessions.begin() as s:
        accounts.get_user(s, "ada").password_hash = credentials.hash_password("another")
    assert client.get("/ui/vms").status_code == 303


def test_a_member_sees_only_its_projects_and_no_admin_pages(app, make_vm):
    mine = make_vm("mine", project_id="other")
    theirs = make_vm("theirs", project_id="default")
    client, _, _ = logged_in(app, "mel")
    page = client.get("/ui/vms").text
    assert 'data-vm="mine"' in page and 'data-vm="theirs"' not in page
    assert client.get(f"/ui/vms/{theirs.id}/nics").status_code == 404
    assert client.get(f"/ui/vms/{mine.id}/nics").status_code == 200
    assert client.get("/ui/hosts").status_code == 403
    assert client.get("/ui/flavors").status_code == 403


def test_a_refused_button_is_disabled_with_every_reason(app, make_vm, make_host, make_nic):
    host = make_host()
    vm = make_vm("xp", status="up", host=host, os_type="windows_xp")
    make_nic(vm, "n1", is_plugged=False)
    client, _, _ = logged_in(app)
    page = client.get(f"/ui/vms/{vm.id}/nics").text
    button = re.search(r'<button[^>]*id="nic-activate-n1"[^>]*>', page).group(0)
    assert "disabled" in button and "does not support NIC hot plug" in button
    assert 'aria-describedby="nic-activate-n1-why"' in button and 'id="nic-activate-n1-why"' in page
    assert re.search(r'<button[^>]*id="controller-new"[^>]*disabled', client.get(f"/ui/vms/{vm.id}/controllers").text)


def test_the_new_nic_dialog_has_activate_checked_by_default(app, make_vm):
    vm = make_vm(status="down")
    client, _, _ = logged_in(app)
    dialog = client.get(f"/ui/vms/{vm.id}/nics/new", headers={"HX-Request": "true"}).text
    assert re.search(r'<input[^>]*id="nic-active"[^>]*checked', dialog)
    assert '<label class="pf-v6-c-check__label" for="nic-active">Activate</label>' in dialog


def test_an_action_runs_the_command_and_says_when_it_applies(app, make_vm):
    vm = make_vm(status="down")
    client, token, _ = logged_in(app)
    resp = client.post(f"/ui/vms/{vm.id}/nics", headers={"HX-Request": "true", "X-CSRF-Token": token},
                       data={"name": "n1", "network": "ovirtmgmt", "active": "on", "linked": "on"})
    assert resp.status_code == 200 and "pb-refresh" in resp.headers["HX-Trigger"]
    assert "NIC n1 added, activated" in resp.text and "next start" in resp.text
    page = client.get(f"/ui/vms/{vm.id}/nics").text
    assert 'data-nic="n1" data-status="plugged"' in page and "plugged at next start" in page


def test_a_refusal_is_rendered_where_the_action_was_taken_with_its_reasons(app, make_vm):
    vm = make_vm(status="down")
    client, token, _ = logged_in(app)
    resp = client.post(f"/ui/vms/{vm.id}/stop", headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert resp.status_code == 409 and resp.headers["X-PB-Rendered"] == "1"
    assert "VM_NOT_RUNNING" in resp.text and 'role="alert"' in resp.text
    resp = client.post(f"/ui/vms/{vm.id}/controllers", headers={"HX-Request": "true", "X-CSRF-Token": token},
                       data={"model": "ehci", "count": "many"})
    assert resp.status_code == 400 and "INVALID_FIELD" in resp.text


def test_a_live_region_answers_204_while_nothing_changed(app, make_vm):
    vm = make_vm(status="down")
    client, _, _ = logged_in(app)
    headers = {"HX-Request": "true"}
    first = client.get(f"/ui/vms/{vm.id}/nics/live", headers=headers)
    digest = re.search(r'"v": "([0-9a-f]+)"', first.text).group(1)
    assert 'hx-trigger="every 4s' in first.text
    assert client.get(f"/ui/vms/{vm.id}/nics/live?v={digest}", headers=headers).status_code == 204


def test_an_unplug_in_flight_polls_fast_and_shows_its_elapsed_time(app, make_vm, make_host, make_nic):
    vm = make_vm(status="up", host=make_host())
    make_nic(vm, "n1", is_plugged=False, plug_state="unplugging", plug_started_at=utcnow())
    client, _, _ = logged_in(app)
    region = client.get(f"/ui/vms/{vm.id}/nics/live", headers={"HX-Request": "true"}).text
    assert 'hx-trigger="every 1s' in region and 'data-status="unplugging"' in region and "pb-spinner" in region
    assert "The guest has not released the device yet." in region


def test_assets_come_from_node_modules_and_nothing_else_there_is_served(app):
    client = app.test_client()
    assert client.get("/ui/assets/vendor/htmx.org/dist/htmx.min.js").status_code == 200
    assert client.get("/ui/assets/vendor/@patternfly/patternfly/patternfly.min.css").status_code == 200
    assert client.get("/ui/assets/vendor/htmx.org/package.json").status_code == 404
    assert client.get("/ui/assets/vendor/@patternfly/../htmx.org/package.json").status_code == 404


def test_two_workers_making_the_secret_key_at_once_get_the_same_whole_key(tmp_path):
    """Workers booting together each make the key when there is none. The file appears only whole: a
    worker that comes while another is making it reads a full key, never an empty file (which failed
    the worker's boot, and gunicorn then stopped the whole server)."""
    real, keys, calls = secrets.token_hex, [], []

    def another_worker_meanwhile(n):
        calls.append(n)
        if len(calls) == 1:     # the first worker makes its key: the second one comes now
            keys.append(secret.load_or_create(tmp_path))
        return real(n)
    with mock.patch.object(secret.secrets, "token_hex", another_worker_meanwhile):
        first = secret.load_or_create(tmp_path)
    assert first == keys[0] == (tmp_path / secret.FILE_NAME).read_bytes() and len(first) == 64
    assert [p.name for p in tmp_path.iterdir()] == [secret.FILE_NAME]


def test_the_secret_key_is_made_once_and_kept_0600(tmp_path):
    key = secret.load_or_create(tmp_path)
    path = tmp_path / secret.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and secret.load_or_create(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        secret.load_or_create(tmp_path)


# ---- USB host devices: the VM's Host devices tab, the Add host device dialog, the host's inventory ----

def usb(name, port, serial, allowed=True, product="Cruzer Blade", **kw):
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567",
            "vendorName": "SanDisk Corp.", "productName": product, "portPath": port, "serial": serial,
            "allowed": allowed, "bus": 1, "device": int(port[-1]) + 1, **kw}


PCI = {"name": "pci_0000_00_19_0", "capability": "pci", "vendorId": "8086", "productId": "10f5",
       "vendorName": "Intel Corporation", "productName": "82567LM Gigabit", "pciAddress": "0000:00:19.0",
       "iommuGroup": 7, "driver": "e1000e", "allowed": True}


@pytest.fixture
def inventory(sessions, make_host, make_vm):
    """A host with three USB keys (one free, one off the whitelist, one held by a stopped VM) and a PCI
    function; a running VM on it; a second host with one key."""
    from engine.commands import add_hostdev
    from engine.dao import host_devices

    host, other_host = make_host("lab1"), make_host("lab2")
    with sessions.begin() as s:
        free, banned, held = host_devices.sync(s, host.id, [
            usb("usb_1_2", "1-2", "FREE1"), usb("usb_1_3", "1-3", "BANNED", allowed=False, product="Token"),
            usb("usb_1_4", "1-4", "HELD1", product="Held key"), PCI]).added[:3]
        (away,) = host_devices.sync(s, other_host.id, [usb("usb_2_1", "2-1", "AWAY")]).added
    running = make_vm("runner", status="up", host=host)
    holder = make_vm("holder", status="down")
    add_hostdev.execute(sessions, None, add_hostdev.Params(holder.id, held))
    return {"host": host, "other_host": other_host, "running": running, "holder": holder,
            "free": free, "banned": banned, "held": held, "away": away}


def choice(dialog, hd_id):
    row = re.search(rf'<tr[^>]*data-choice="{hd_id}".*?</tr>', dialog, re.S)
    assert row, dialog[:2000]
    return row.group(0)


def test_the_dialog_lists_the_vm_hosts_usb_devices_and_only_free_whitelisted_ones_can_be_picked(app, inventory):
    client, _, _ = logged_in(app)
    vm = inventory["running"]
    dialog = client.get(f"/ui/vms/{vm.id}/hostdevs/new", headers={"HX-Request": "true"}).text
    free = choice(dialog, inventory["free"])
    assert 'data-selectable="true"' in free and "disabled" not in free
    assert "Cruzer Blade" in free and "SanDisk Corp." in free and "1-2" in free and "FREE1" in free
    held = choice(dialog, inventory["held"])
    assert 'data-selectable="false"' in held and re.search(r'<input[^>]*type="radio"[^>]*disabled', held)
    assert "used by VM" in held and ">holder</a>" in held
    banned = choice(dialog, inventory["banned"])
    assert 'data-selectable="false"' in banned and "unavailable: not on the host" in banned
    assert f'data-choice="{inventory["away"]}"' not in dialog         # another host's key is not listed
    assert "pci_0000" not in dialog and "82567LM" not in dialog          # PCI functions are not USB devices
    assert re.search(r'<input[^>]*id="hostdev-required"', dialog) and \
        not re.search(r'<input[^>]*id="hostdev-required"[^>]*checked', dialog)      # optional by default
    assert '<label class="pf-v6-c-check__label" for="hostdev-required">Required at start</label>' in dialog
    for d in ("free", "held", "banned"):      # every radio has a label
        assert f'<label for="hostdev-choice-{inventory[d]}">' in dialog


def test_a_stopped_vm_without_a_host_picks_one_first_and_a_pinned_one_lists_its_hosts(app, inventory, make_vm):
    client, _, _ = logged_in(app)
    loose = make_vm("loose", status="down")
    dialog = client.get(f"/ui/vms/{loose.id}/hostdevs/new", headers={"HX-Request": "true"}).text
    assert '<label class="pf-v6-c-form__label" for="hostdev-host">Host</label>' in dialog
    assert "data-choice" not in dialog and 'name="host_device_id"' not in dialog
    dialog = client.get(f"/ui/vms/{loose.id}/hostdevs/new?host={inventory['other_host'].id}",
                        headers={"HX-Request": "true"}).text
    assert 'data-selectable="true"' in choice(dialog, inventory["away"])
    assert f'data-choice="{inventory["free"]}"' not in dialog
    assert client.get(f"/ui/vms/{loose.id}/hostdevs/new?host=nope", headers={"HX-Request": "true"}).status_code == 404
    # The holder is pinned to lab1 by its key: no picker, lab1's devices, its own key shown as its own.
    holder = inventory["holder"]
    dialog = client.get(f"/ui/vms/{holder.id}/hostdevs/new?host={inventory['other_host'].id}",
                        headers={"HX-Request": "true"}).text
    assert 'id="hostdev-host"' not in dialog and "USB devices of host lab1" in dialog
    assert "attached to this VM" in choice(dialog, inventory["held"])


def test_adding_a_host_device_runs_the_command_optional_unless_asked(app, inventory, make_vm, sessions):
    from engine.dao import host_devices

    vm = make_vm("cold", status="down")
    client, token, _ = logged_in(app)
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    resp = client.post(f"/ui/vms/{vm.id}/hostdevs", headers=headers,
                       data={"host_device_id": str(inventory["free"]), "required": "on"})
    assert resp.status_code == 200 and "required at start" in resp.text and "next start" in resp.text
    with sessions() as s:
        assert (host_devices.get(s, inventory["free"]).status, host_devices.get(s, inventory["free"]).vm_id) == \
            ("allocated", vm.id)
    page = client.get(f"/ui/vms/{vm.id}/hostdevs").text
    row = re.search(rf'<tr[^>]*data-hostdev="{inventory["free"]}".*?</tr>', page, re.S).group(0)
    assert "Cruzer Blade" in row and "FREE1" in row and 'data-startup="required"' in row and "lab1" in row
    assert re.search(r'<button[^>]*id="hostdev-remove-\d+"', row) and \
        not re.search(r'<button[^>]*id="hostdev-remove-\d+"[^>]*disabled', row)
    # The one held by another VM is refused by the command with its reason, shown where the action was taken.
    resp = client.post(f"/ui/vms/{inventory['running'].id}/hostdevs", headers=headers,
                       data={"host_device_id": str(inventory["held"])})
    assert resp.status_code == 409 and "HOST_DEVICE_BUSY" in resp.text
    assert client.post(f"/ui/vms/{vm.id}/hostdevs", headers=headers, data={}).status_code == 400
    # Remove detaches it (a stopped VM's definition).
    dev_id = re.search(r'id="hostdev-remove-\d+"[^>]*hx-post="/ui/vms/[^/]+/hostdevs/([^/]+)/remove"', row).group(1)
    resp = client.post(f"/ui/vms/{vm.id}/hostdevs/{dev_id}/remove", headers=headers)
    assert resp.status_code == 200 and "detached" in resp.text
    with sessions() as s:
        assert host_devices.get(s, inventory["free"]).status == "available"


def test_a_held_device_gone_from_the_host_is_flagged_missing_on_the_vm_tab(app, inventory, sessions):
    from engine.dao import host_devices

    with sessions.begin() as s:      # lab1 now reports only its free key: the holder's key is gone
        host_devices.sync(s, inventory["host"].id, [usb("usb_1_2", "1-2", "FREE1")])
    client, _, _ = logged_in(app)
    page = client.get(f"/ui/vms/{inventory['holder'].id}/hostdevs").text
    row = re.search(rf'<tr[^>]*data-hostdev="{inventory["held"]}"[^>]*>', page).group(0)
    assert 'data-missing="true"' in row and "missing from the host" in page
    assert 'data-startup="optional"' in page


def test_the_hosts_inventory_page_shows_usb_and_pci_with_status_holder_and_whitelist(app, inventory):
    client, _, _ = logged_in(app)
    hosts = client.get("/ui/hosts").text
    assert f'href="/ui/hosts/{inventory["host"].id}/devices"' in hosts
    page = client.get(f"/ui/hosts/{inventory['host'].id}/devices").text
    assert page.count("data-device=") == 4 and "82567LM Gigabit" in page and "0000:00:19.0" in page
    held = re.search(rf'<tr[^>]*data-device="{inventory["held"]}".*?</tr>', page, re.S).group(0)
    assert 'data-status="allocated"' in held and f'href="/ui/vms/{inventory["holder"].id}/hostdevs">holder</a>' in held
    banned = re.search(rf'<tr[^>]*data-device="{inventory["banned"]}"[^>]*>', page).group(0)
    assert 'data-status="unavailable"' in banned and 'data-allowed="false"' in banned
    only_usb = client.get(f"/ui/hosts/{inventory['host'].id}/devices?capability=usb_device&status=").text
    assert only_usb.count("data-device=") == 3
    assert client.get(f"/ui/hosts/{inventory['host'].id}/devices?status=bogus").status_code == 400
    assert client.get("/ui/hosts/nope/devices").status_code == 404


def test_host_devices_are_for_admins_a_member_gets_403_and_sees_no_add_button(app, inventory, make_vm):
    mine = make_vm("mine", project_id="other", status="down")
    client, token, _ = logged_in(app, "mel")
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    page = client.get(f"/ui/vms/{mine.id}/hostdevs")
    assert page.status_code == 200 and 'id="hostdev-new"' not in page.text
    assert client.get(f"/ui/vms/{mine.id}/hostdevs/new", headers={"HX-Request": "true"}).status_code == 403
    assert client.post(f"/ui/vms/{mine.id}/hostdevs", headers=headers,
                       data={"host_device_id": str(inventory["free"])}).status_code == 403
    assert client.post(f"/ui/vms/{mine.id}/hostdevs/x/activate", headers=headers).status_code == 403
    assert client.get(f"/ui/hosts/{inventory['host'].id}/devices").status_code == 403


def test_host_device_actions_need_the_csrf_token(app, inventory):
    client, _, _ = logged_in(app)
    vm = inventory["running"]
    assert client.post(f"/ui/vms/{vm.id}/hostdevs", data={"host_device_id": str(inventory["free"])}).status_code == 403
    assert client.post(f"/ui/vms/{vm.id}/hostdevs/x/remove", headers={"X-CSRF-Token": "forged"}).status_code == 403


def test_the_vm_forms_flavors_are_those_the_user_sees(app, sessions):
    from engine.dao import flavors as flavors_dao
    with sessions.begin() as s:
        flavors_dao.add(s, name="open-flavor", memory_mb=128, vcpus=1)
        flavors_dao.add(s, name="hidden-flavor", memory_mb=128, vcpus=1, is_public=False)
    admin, _, _ = logged_in(app)
    page = admin.get("/ui/vms").text
    assert "open-flavor" in page and "hidden-flavor" in page
    member, _, _ = logged_in(app, "mel")
    page = member.get("/ui/vms").text
    assert "open-flavor" in page and "hidden-flavor" not in page


def _host_row(page: str, name: str) -> str:
    row = re.search(rf'<tr[^>]*data-host="{name}".*?</tr>', page, re.S)
    assert row, page[:2000]
    return row.group(0)


def test_hosts_page_offers_maintenance_and_removal_gated_by_the_engine(app, inventory, sessions):
    from engine.dao import hosts as hosts_dao

    client, token, _ = logged_in(app)
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    page = client.get("/ui/hosts").text
    busy = _host_row(page, "lab1")          # runs a VM: maintenance refused, the reason as the tooltip
    assert re.search(r'id="maintenance-lab1"[^>]*disabled', busy) and 'data-reasons="HOST_RUNS_VMS"' in busy
    assert 'hx-post="/ui/hosts/' in _host_row(page, "lab2") and "disabled" not in _host_row(page, "lab2")

    resp = client.post(f"/ui/hosts/{inventory['other_host'].id}/maintenance", headers=headers)
    assert resp.status_code == 200 and "maintenance" in resp.text and "pb-refresh" in resp.headers["HX-Trigger"]
    idle = _host_row(client.get("/ui/hosts").text, "lab2")
    assert 'data-status="maintenance"' in idle and 'id="activate-lab2"' in idle and 'id="remove-lab2"' in idle
    assert "hx-confirm" in idle and 'id="maintenance-lab2"' not in idle

    refused = client.post(f"/ui/hosts/{inventory['host'].id}/maintenance", headers=headers)
    assert refused.status_code == 409 and "HOST_RUNS_VMS" in refused.text
    resp = client.post(f"/ui/hosts/{inventory['other_host'].id}/remove", headers=headers)
    assert resp.status_code == 200 and "Host removed." in resp.text
    with sessions() as s:
        assert hosts_dao.get(s, inventory["other_host"].id) is None
    assert 'data-host="lab2"' not in client.get("/ui/hosts").text


def test_an_unreachable_host_can_be_confirmed_rebooted_from_the_hosts_page(app, inventory, sessions):
    from engine.dao import hosts as hosts_dao, vms

    with sessions.begin() as s:
        hosts_dao.set_status(s, inventory["host"].id, "unreachable")
    client, token, _ = logged_in(app)
    row = _host_row(client.get("/ui/hosts").text, "lab1")
    assert 'id="fence-lab1"' in row and "was rebooted or is off?" in row
    assert "fence-lab2" not in client.get("/ui/hosts").text           # lab2 answers
    resp = client.post(f"/ui/hosts/{inventory['host'].id}/fence", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert resp.status_code == 200 and "confirmed rebooted" in resp.text
    with sessions() as s:
        assert vms.get(s, inventory["running"].id).status == "down"


def test_host_actions_are_for_admins(app, inventory):
    client, token, _ = logged_in(app, "mel")
    resp = client.post(f"/ui/hosts/{inventory['other_host'].id}/maintenance", headers={"X-CSRF-Token": token})
    assert resp.status_code == 403


def test_the_hosts_page_reads_its_gates_in_a_fixed_number_of_statements(app, inventory, sessions, make_host):
    """The page polls every few seconds: its canDo inputs are read for every host at once, not per host."""
    from sqlalchemy import event

    client, _, _ = logged_in(app)
    engine = sessions.kw["bind"]
    counted: list[str] = []

    def count(*_args):
        counted.append("x")

    def statements() -> int:
        counted.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get("/ui/hosts/table").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(counted)

    few = statements()
    for i in range(5):
        make_host(f"extra{i}")
    assert statements() == few
