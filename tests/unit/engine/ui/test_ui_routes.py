"""The web UI's routes with Flask's test client: login and logout, the session cookie's flags, CSRF,
the browser redirect of GET /, tenancy, gating from the engine's canDo, live regions and actions."""
from __future__ import annotations

import os
import re
import stat

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


def test_the_secret_key_is_made_once_and_kept_0600(tmp_path):
    key = secret.load_or_create(tmp_path)
    path = tmp_path / secret.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and secret.load_or_create(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        secret.load_or_create(tmp_path)
