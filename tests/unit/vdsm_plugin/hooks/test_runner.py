"""The hook runner, with real scripts run as subprocesses."""
from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path

import pytest

from vdsm_plugin.errors import AgentError
from vdsm_plugin.hooks import HOOK_POINTS, HookResult, HookRunner, is_hook_name
from tests.unit.vdsm_plugin.hooks.scripts import pid_gone, write_hook

XML = "<domain><devices><a/></devices></domain>"
POINT = "before_vm_start"


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    d = tmp_path / "hooks"
    d.mkdir(mode=0o755)
    return d


@pytest.fixture
def runner(hooks: Path) -> HookRunner:
    return HookRunner(hooks, timeout=5)


def test_hook_points_are_those_of_the_design():
    assert HOOK_POINTS == (
        "before_vm_start", "after_vm_start", "before_nic_hotplug", "after_nic_hotplug",
        "after_nic_hotplug_fail", "before_nic_hotunplug", "after_nic_hotunplug", "before_device_hotplug",
        "after_device_hotplug", "after_device_hotplug_fail", "before_device_hotunplug",
        "after_device_hotunplug", "after_vm_destroy")


def test_no_scripts_returns_the_xml_unchanged(runner):
    result = runner.run(POINT, XML)
    assert result == HookResult(xml=XML, ran=[], failures=[])


def test_unknown_point_is_a_programming_error(runner):
    with pytest.raises(ValueError, match="unknown hook point"):
        runner.run("before_coffee", XML)


def test_exit_0_edit_reaches_the_next_script_and_the_result(runner, hooks):
    write_hook(hooks, POINT, "10_add_b", """
        sed -i 's|<a/>|<a/><b/>|' "$_hook_domxml"
    """)
    write_hook(hooks, POINT, "20_needs_b", """
        grep -q '<b/>' "$_hook_domxml" || { echo "b is missing" >&2; exit 1; }
        sed -i 's|<b/>|<b/><c/>|' "$_hook_domxml"
    """)
    result = runner.run(POINT, XML)
    assert result.xml == "<domain><devices><a/><b/><c/></devices></domain>"
    assert result.ran == ["10_add_b", "20_needs_b"]
    assert result.failures == []


def test_scripts_run_in_name_order(runner, hooks, tmp_path):
    log = tmp_path / "order.log"
    for name in ("20_x", "10_y", "3_z", "10_a"):
        write_hook(hooks, POINT, name, f'echo {name} >> "$order_log"\n')
    result = runner.run(POINT, XML, env={"order_log": str(log)})
    expected = ["10_a", "10_y", "20_x", "3_z"]
    assert log.read_text().split() == expected
    assert result.ran == expected


def test_exit_1_goes_on_and_is_recorded(runner, hooks):
    write_hook(hooks, POINT, "10_fails", """
        sed -i 's|<a/>|<a/><partial/>|' "$_hook_domxml"
        echo "first line" >&2
        echo "could not reach the switch" >&2
        exit 1
    """)
    write_hook(hooks, POINT, "20_odd_code", "echo odd >&2; exit 7\n")
    write_hook(hooks, POINT, "30_ok", """sed -i 's|<a/>|<a/><after/>|' "$_hook_domxml"\n""")
    result = runner.run(POINT, XML)
    assert result.ran == ["10_fails", "20_odd_code", "30_ok"]
    assert result.failures == [
        {"point": POINT, "script": "10_fails", "exitCode": 1,
         "stderr": "first line\ncould not reach the switch"},
        {"point": POINT, "script": "20_odd_code", "exitCode": 7, "stderr": "odd"},
    ]
    # What a failing script wrote still counts, as with VDSM.
    assert "<partial/>" in result.xml and "<after/>" in result.xml


def test_script_killed_by_a_signal_counts_as_a_failure(runner, hooks):
    write_hook(hooks, POINT, "10_dies", "kill -TERM $$\n")
    result = runner.run(POINT, XML)
    assert result.failures[0]["exitCode"] < 0
    assert result.xml == XML


def test_exit_2_refuses_with_stderr_in_the_message(runner, hooks, tmp_path):
    marker = tmp_path / "later-ran"
    write_hook(hooks, POINT, "10_policy", """
        echo "noise" >&2
        echo "tenant may not use this network" >&2
        exit 2
    """)
    write_hook(hooks, POINT, "20_later", f"touch {marker}\n")
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    err = e.value
    assert err.name == "hookRefused" and err.code == 306
    assert err.detail == f"{POINT}/10_policy: noise\ntenant may not use this network"
    assert err.data == {"script": "10_policy", "point": POINT}
    assert not marker.exists()


def test_timeout_kills_the_whole_process_group(hooks, tmp_path):
    pid_file = tmp_path / "child.pid"
    write_hook(hooks, POINT, "10_hangs", f"""
        sleep 30 &
        echo $! > {pid_file}
        echo "waiting for the policy server" >&2
        wait
    """)
    runner = HookRunner(hooks, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    elapsed = time.monotonic() - started
    assert e.value.name == "hookFailed"
    assert "10_hangs timed out after 0.5s" in e.value.detail
    assert "waiting for the policy server" in e.value.detail
    assert e.value.data["script"] == "10_hangs"
    assert elapsed < 3
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while not pid_gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_gone(child), "the hook's child process survived the timeout"


def test_env_is_clean_and_explicit(runner, hooks, tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGBOARD_AGENT_SECRET", "do-not-leak")
    out = tmp_path / "env.out"
    write_hook(hooks, POINT, "10_env", f"env > {out}\n")
    runner.run(POINT, XML, env={"vmId": "vm-1", "sap_agent": "true", "empty": ""})
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert seen["vmId"] == "vm-1"
    assert seen["sap_agent"] == "true"
    assert seen["empty"] == ""
    assert seen["_hook_domxml"].startswith(tempfile.gettempdir())
    assert seen["PATH"] == runner.path
    assert "PLUGBOARD_AGENT_SECRET" not in seen
    # /bin/sh adds PWD (and maybe SHLVL, _) of its own; nothing else may appear.
    assert set(seen) - {"PWD", "SHLVL", "_", "OLDPWD"} == {"vmId", "sap_agent", "empty", "_hook_domxml", "PATH"}


@pytest.mark.parametrize("name", ["bad-name", "1abc", "with space", "", "LD_PRELOAD", "PATH",
                                  "_hook_domxml", "_hook_usb_inventory", "PYTHONPATH", "BASH_ENV"])
def test_env_names_that_cannot_be_passed_are_rejected(runner, hooks, name):
    write_hook(hooks, POINT, "10_ok", "exit 0\n")
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML, env={name: "x"})
    assert e.value.name == "invalidParams"


def test_env_value_with_nul_is_rejected(runner):
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML, env={"prop": "a\0b"})
    assert e.value.name == "invalidParams"


def test_extra_files_arrive_by_path(runner, hooks, tmp_path):
    out = tmp_path / "inventory.seen"
    write_hook(hooks, POINT, "10_read", f'cat "$_hook_usb_inventory" > {out}\n')
    runner.run(POINT, XML, extra_files={"_hook_usb_inventory": '[{"vendorId": "136b"}]'})
    assert out.read_text() == '[{"vendorId": "136b"}]'


def test_extra_file_name_must_be_a_valid_unreserved_variable(runner):
    with pytest.raises(ValueError):
        runner.run(POINT, XML, extra_files={"_hook_domxml": "x"})
    with pytest.raises(ValueError):
        runner.run(POINT, XML, extra_files={"bad-name": "x"})
    with pytest.raises(ValueError):
        runner.run(POINT, XML, env={"inv": "a"}, extra_files={"inv": "b"})


def _paths_recorder(hooks: Path, name: str, log: Path, rc: int = 0) -> None:
    write_hook(hooks, POINT, name, f"""
        echo "$_hook_domxml" >> {log}
        echo "$_hook_usb_inventory" >> {log}
        exit {rc}
    """)


@pytest.mark.parametrize("rc", [0, 1, 2])
def test_temp_files_are_removed_afterwards(runner, hooks, tmp_path, rc):
    log = tmp_path / "paths.log"
    _paths_recorder(hooks, "10_record", log, rc)
    try:
        runner.run(POINT, XML, extra_files={"_hook_usb_inventory": "[]"})
    except AgentError:
        assert rc == 2
    paths = log.read_text().split()
    assert len(paths) == 2
    assert not any(os.path.exists(p) for p in paths)


def test_temp_files_are_removed_after_a_timeout(hooks, tmp_path):
    log = tmp_path / "paths.log"
    write_hook(hooks, POINT, "10_record_and_hang", f"""
        echo "$_hook_domxml" >> {log}
        echo "$_hook_usb_inventory" >> {log}
        exec sleep 30
    """)
    with pytest.raises(AgentError):
        HookRunner(hooks, timeout=0.5).run(POINT, XML, extra_files={"_hook_usb_inventory": "[]"})
    paths = log.read_text().split()
    assert len(paths) == 2 and not any(os.path.exists(p) for p in paths)


def test_no_temp_files_left_in_the_temp_dir(hooks, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    write_hook(hooks, POINT, "10_ok", "exit 0\n")
    HookRunner(hooks).run(POINT, XML, extra_files={"_hook_usb_inventory": "[]"})
    assert os.listdir(tmp) == []


def test_files_go_to_the_scratch_dir_and_what_a_killed_run_left_there_is_cleared(hooks, tmp_path):
    scratch = tmp_path / "state" / "hook-files"
    runner = HookRunner(hooks, scratch_dir=scratch)
    assert runner.clear_scratch() == 0 and scratch.is_dir() and (scratch.stat().st_mode & 0o777) == 0o700
    log = tmp_path / "paths.log"
    _paths_recorder(hooks, "10_record", log)
    runner.run(POINT, XML, extra_files={"_hook_usb_inventory": "[]"})
    paths = [Path(p) for p in log.read_text().split()]
    assert [p.parent for p in paths] == [scratch, scratch]
    assert os.listdir(scratch) == []
    # what an agent killed in the middle of a hook leaves behind; anything else there stays
    (scratch / "plugboard-hook-domxml-abc.xml").write_text("<domain/>")
    (scratch / "plugboard-hook-_hook_usb_inventory-def").write_text("[]")
    (scratch / "notes.txt").write_text("an operator's")
    assert runner.clear_scratch() == 2
    assert os.listdir(scratch) == ["notes.txt"]


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_group_or_world_writable_script_is_refused_before_anything_runs(runner, hooks, tmp_path, mode):
    marker = tmp_path / "first-ran"
    write_hook(hooks, POINT, "10_first", f"touch {marker}\n")
    bad = write_hook(hooks, POINT, "20_writable", "exit 0\n", mode=mode)
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    assert e.value.name == "hookFailed"
    assert e.value.detail == f"{bad} is writable by group or others; refusing to run it"
    assert e.value.data["script"] == "20_writable"
    assert not marker.exists()


def test_writable_hook_directory_is_refused(runner, hooks):
    write_hook(hooks, POINT, "10_ok", "exit 0\n")
    os.chmod(hooks / POINT, 0o777)
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    assert e.value.name == "hookFailed"
    assert "is writable by group or others; refusing to run it" in e.value.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_script_owned_by_another_user_is_refused(runner, hooks):
    script = write_hook(hooks, POINT, "10_foreign", "exit 0\n")
    os.chown(script, 4242, 4242)
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    assert e.value.name == "hookFailed"
    assert "owned by uid 4242" in e.value.detail and str(script) in e.value.detail


def test_leftovers_and_non_executables_are_skipped(runner, hooks, tmp_path):
    log = tmp_path / "ran.log"
    body = 'echo "$0" >> ' + str(log) + "\n"
    write_hook(hooks, POINT, "10_real", body)
    for name in ("10_real~", "10_real.rpmnew", "10_real.rpmsave", "10_real.dpkg-old", ".hidden",
                 "#10_real#", "10_real.swp", "10_real.bak"):
        write_hook(hooks, POINT, name, body)
    write_hook(hooks, POINT, "20_not_executable", body, mode=0o644)
    # A world-writable file that is not executable is not a hook, so it does not block the others.
    write_hook(hooks, POINT, "25_notes", body, mode=0o666)
    (hooks / POINT / "30_a_directory").mkdir()
    os.symlink(hooks / POINT / "missing", hooks / POINT / "40_dangling")
    result = runner.run(POINT, XML)
    assert result.ran == ["10_real"]
    assert [Path(p).name for p in log.read_text().split()] == ["10_real"]
    assert runner.list_hooks() == {POINT: ["10_real"]}


@pytest.mark.parametrize("name,ok", [("50_usb", True), ("50_usb~", False), (".50_usb", False),
                                     ("50_usb.rpmnew", False), ("#50_usb#", False), ("50_usb.py", True)])
def test_is_hook_name(name, ok):
    assert is_hook_name(name) is ok


def test_list_hooks_per_point(runner, hooks):
    write_hook(hooks, "before_vm_start", "50_b", "exit 0\n")
    write_hook(hooks, "before_vm_start", "10_a", "exit 0\n")
    write_hook(hooks, "after_vm_destroy", "50_c", "exit 0\n")
    write_hook(hooks, "not_a_point", "50_d", "exit 0\n")
    assert runner.list_hooks() == {"before_vm_start": ["10_a", "50_b"], "after_vm_destroy": ["50_c"]}


def test_list_hooks_of_a_missing_directory_is_empty(tmp_path):
    assert HookRunner(tmp_path / "nowhere").list_hooks() == {}


def test_exit_0_with_malformed_xml_fails(runner, hooks):
    write_hook(hooks, POINT, "10_breaks", """echo '<domain><oops' > "$_hook_domxml"\n""")
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    assert e.value.name == "hookFailed" and "10_breaks left malformed XML" in e.value.detail


def test_exit_1_with_malformed_xml_keeps_the_previous_xml(runner, hooks, tmp_path):
    seen = tmp_path / "seen.xml"
    write_hook(hooks, POINT, "10_breaks", """echo '<domain><oops' > "$_hook_domxml"; exit 1\n""")
    write_hook(hooks, POINT, "20_reads", f'cat "$_hook_domxml" > {seen}\n')
    result = runner.run(POINT, XML)
    assert result.xml == XML
    assert seen.read_text() == XML
    assert result.failures[0]["script"] == "10_breaks" and "xmlDiscarded" in result.failures[0]


def test_script_that_cannot_be_executed_fails(runner, hooks):
    path = hooks / POINT
    path.mkdir()
    script = path / "10_bad_interpreter"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(AgentError) as e:
        runner.run(POINT, XML)
    assert e.value.name == "hookFailed" and "10_bad_interpreter: cannot run it" in e.value.detail


def test_python_hook_edits_utf8_xml(runner, hooks):
    write_hook(hooks, POINT, "10_py", """
        import os
        p = os.environ["_hook_domxml"]
        s = open(p, encoding="utf-8").read()
        open(p, "w", encoding="utf-8").write(s.replace("<a/>", "<a>é</a>"))
    """, shell=False)
    assert runner.run(POINT, XML).xml == "<domain><devices><a>é</a></devices></domain>"


def test_stderr_tail_is_bounded(runner, hooks):
    write_hook(hooks, POINT, "10_chatty", """
        i=0; while [ $i -lt 2000 ]; do echo "line $i of noise" >&2; i=$((i+1)); done
        echo "the real reason" >&2
        exit 1
    """)
    failure = runner.run(POINT, XML).failures[0]
    assert failure["stderr"].endswith("the real reason")
    assert len(failure["stderr"]) <= 2000


def test_runner_leaves_no_temp_files_matching_its_prefix(runner, hooks):
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "plugboard-hook-*")))
    write_hook(hooks, POINT, "10_ok", "exit 0\n")
    runner.run(POINT, XML, extra_files={"_hook_usb_inventory": "[]"})
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "plugboard-hook-*"))) <= before
