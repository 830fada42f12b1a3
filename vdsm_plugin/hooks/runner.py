"""Run VDSM-style hook scripts: `<hooks dir>/<hook point>/*`, in name order, each as its own process.

The contract (documented for hook authors in README.md next to this module):

- The XML (the whole domain for VM points, the device alone for device points) is in a temporary
  file whose path is in `_hook_domxml`; a script edits that file in place and the next script sees
  the edit. The caller gets the final XML back in `HookResult.xml`.
- The child's environment is built from scratch: PATH, the variables the agent passes (vmId, the VM
  and device custom properties) and one variable per extra file (`_hook_usb_inventory`, ...).
  Nothing else of the agent's environment leaks in.
- Exit 0: fine. Exit 2: the operation is refused (`hookRefused`). Any other exit code, or death by a
  signal, counts as 1: the failure is recorded in `HookResult.failures` and the operation goes on.
- A script that runs longer than the timeout is killed with its whole process group and the operation
  fails (`hookFailed`): a policy hook that hangs must not let the operation through.
- A script, or any directory on the way to it or to the hooks directory (symlinks resolved first),
  writable by group or others, or owned by anyone but root or the agent's user, makes the whole hook
  point refused before any of its scripts runs (`hookFailed`, logged).
- Files that are not regular executables, dotfiles, editor and package-manager leftovers (`*~`,
  `#*#`, `*.rpmnew`, `*.rpmsave`, `*.dpkg-old`, `*.swp`, `*.bak`, ...) are skipped.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree

from vdsm_plugin.errors import AgentError

log = logging.getLogger(__name__)

HOOK_POINTS: tuple[str, ...] = (
    "before_vm_start",
    "after_vm_start",
    "before_nic_hotplug",
    "after_nic_hotplug",
    "after_nic_hotplug_fail",
    "before_nic_hotunplug",
    "after_nic_hotunplug",
    "before_device_hotplug",
    "after_device_hotplug",
    "after_device_hotplug_fail",
    "before_device_hotunplug",
    "after_device_hotunplug",
    "after_vm_destroy",
)

DOMXML_VAR = "_hook_domxml"

# Exit codes of the contract.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2

# How much of a script's stderr goes into messages and failure records.
STDERR_TAIL_CHARS = 2000

# The directories searched for programs, after the agent's own interpreter's directory (so that
# `#!/usr/bin/env python3` finds a Python that has lxml, the one the agent runs on).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Names a caller-supplied variable (a custom property) may not take: the runner's own variables and
# those that change how the dynamic loader or a script interpreter behaves. Hooks run as the agent's
# user, often root; a tenant-controlled custom property must not be able to inject code into them.
_RESERVED_NAMES = frozenset({
    "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH", "GLOBIGNORE",
    "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "NODE_PATH",
    "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CHECK_",
    "TMPDIR", "HOME",
})
_RESERVED_PREFIXES = ("_hook_", "LD_", "PYTHON", "BASH_FUNC_", "GLIBC_", "GCONV_")

# Leftovers of editors and package managers that sit next to real scripts and must never run.
_IGNORED_SUFFIXES = (
    "~", ".rpmnew", ".rpmsave", ".rpmorig", ".dpkg-new", ".dpkg-old", ".dpkg-dist", ".dpkg-tmp",
    ".dpkg-bak", ".ucf-new", ".ucf-old", ".ucf-dist", ".orig", ".bak", ".swp", ".swo", ".tmp",
    ".pyc", ".pyo",
)

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass
class HookResult:
    """What running one hook point produced.

    `xml` is the XML after the last script; `ran` names the scripts run, in order; `failures` holds
    one record per script that exited with a code other than 0 or 2:
    `{"point", "script", "exitCode", "stderr"}` (a negative exitCode is the signal that killed it).
    """

    xml: str
    ran: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def is_hook_name(name: str) -> bool:
    """Whether a file name can be a hook script (dotfiles and editor/package leftovers cannot)."""
    if not name or name.startswith(".") or (name.startswith("#") and name.endswith("#")):
        return False
    return not name.endswith(_IGNORED_SUFFIXES)


class HookRunner:
    """Runs the scripts of one hooks directory. Stateless between calls, so one runner serves every
    thread of the agent."""

    def __init__(self, hooks_dir: Path | str, timeout: float = 30.0, *, path: str | None = None,
                 scratch_dir: Path | None = None) -> None:
        """`scratch_dir`: where the files handed to scripts (the XML, extra files) are written; the
        system's temporary directory when None."""
        if timeout <= 0:
            raise ValueError("hook timeout must be positive")
        self.hooks_dir = Path(hooks_dir)
        self.timeout = float(timeout)
        self.scratch_dir = scratch_dir
        if path is None:
            interpreter_dir = os.path.dirname(os.path.abspath(sys.executable))
            path = f"{interpreter_dir}:{SYSTEM_PATH}" if interpreter_dir else SYSTEM_PATH
        self.path = path

    def clear_scratch(self) -> int:
        """Remove the files a run left in scratch_dir (made when missing, mode 0700): a run removes
        its own files when it ends, but not when the agent is killed in the middle of a hook, and
        they hold domain XML. For the agent's start, before any hook runs; how many were removed."""
        if self.scratch_dir is None:
            return 0
        self.scratch_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        left = list(self.scratch_dir.glob(f"{TEMP_PREFIX}*"))
        for path in left:
            path.unlink(missing_ok=True)
        if left:
            log.info("removed %d hook file(s) left by an agent that stopped in the middle of a hook", len(left))
        return len(left)

    # ------------------------------------------------------------------ discovery

    def scripts(self, point: str) -> list[Path]:
        """The scripts `run(point, ...)` would run, in order. No permission checks here."""
        _check_point(point)
        point_dir = self.hooks_dir / point
        try:
            names = sorted(os.listdir(point_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            if not is_hook_name(name):
                continue
            p = point_dir / name
            try:
                st = os.stat(p)
            except OSError:
                continue  # a dangling symlink
            if stat.S_ISREG(st.st_mode) and os.access(p, os.X_OK):
                found.append(p)
        return found

    def list_hooks(self) -> dict[str, list[str]]:
        """Installed scripts per hook point, for Host.getCapabilities. Points without scripts are left
        out."""
        out: dict[str, list[str]] = {}
        for point in HOOK_POINTS:
            names = [p.name for p in self.scripts(point)]
            if names:
                out[point] = names
        return out

    # ------------------------------------------------------------------ running

    def run(self, point: str, xml: str, env: Mapping[str, str] | None = None,
            extra_files: Mapping[str, str] | None = None) -> HookResult:
        """Run every script of `point` over `xml`; return the resulting XML and what happened.

        `env` (vmId, custom properties, ...) becomes environment variables of each script;
        `extra_files` maps a variable name to content written to a temporary file whose path goes in
        that variable. Raises AgentError `hookRefused` when a script exits 2, `hookFailed` when a
        script times out, cannot be run, is unsafe to run or leaves malformed XML behind, and
        `invalidParams` when a variable name in `env` cannot be passed.
        """
        child_env = self._base_env(env, extra_files)
        scripts = self.scripts(point)
        result = HookResult(xml=xml)
        if not scripts:
            return result
        for script in scripts:
            _check_safe(point, script, self.hooks_dir)

        temp_paths: list[str] = []
        try:
            xml_path = _write_temp(xml, "domxml-", ".xml", temp_paths, self.scratch_dir)
            child_env[DOMXML_VAR] = xml_path
            for var, content in (extra_files or {}).items():
                child_env[var] = _write_temp(content, f"{var.strip('_')}-", "", temp_paths, self.scratch_dir)
            for script in scripts:
                rc, err = self._run_one(point, script, child_env)
                result.ran.append(script.name)
                if err:
                    log.info("hook %s/%s (exit %d): %s", point, script.name, rc, err)
                if rc == EXIT_REFUSED:
                    raise AgentError("hookRefused", f"{point}/{script.name}: {err or 'exited with 2'}",
                                     script=script.name, point=point)
                if rc == EXIT_OK:
                    result.xml = _read_back(point, script, xml_path)
                    continue
                # Exit 1 (or anything else): the operation goes on. What the script managed to write
                # still counts, as with VDSM, unless it is no longer well-formed: then the XML from
                # before the script is put back for the next one.
                failure = {"point": point, "script": script.name, "exitCode": rc, "stderr": err}
                try:
                    result.xml = _read_back(point, script, xml_path)
                except AgentError as e:
                    failure["xmlDiscarded"] = e.detail
                    _rewrite(xml_path, result.xml)
                result.failures.append(failure)
                log.warning("hook %s/%s failed with exit code %d; going on", point, script.name, rc)
            return result
        finally:
            for p in temp_paths:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
                except OSError as e:  # pragma: no cover - nothing sensible left to do
                    log.warning("cannot remove hook temp file %s: %s", p, e)

    def _base_env(self, env: Mapping[str, str] | None,
                  extra_files: Mapping[str, str] | None) -> dict[str, str]:
        child: dict[str, str] = {"PATH": self.path}
        for name, value in (env or {}).items():
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise AgentError("invalidParams", f"{name!r} cannot be passed to hooks: an environment "
                                 "variable name must match [A-Za-z_][A-Za-z0-9_]*", variable=str(name))
            if name in _RESERVED_NAMES or name.startswith(_RESERVED_PREFIXES):
                raise AgentError("invalidParams", f"{name!r} cannot be passed to hooks: the name is "
                                 "reserved", variable=name)
            if not isinstance(value, str) or "\0" in value:
                raise AgentError("invalidParams", f"the value of {name!r} must be a string without NUL "
                                 "characters", variable=name)
            child[name] = value
        for name in extra_files or {}:
            if not isinstance(name, str) or not _ENV_NAME.match(name) or name in ("PATH", DOMXML_VAR):
                raise ValueError(f"invalid variable name for a hook file: {name!r}")
            if name in child:
                raise ValueError(f"{name!r} is given both as a variable and as a file")
        return child

    def _run_one(self, point: str, script: Path, env: dict[str, str]) -> tuple[int, str]:
        """Run one script to completion; return (exit code, stderr tail). Kills the script's whole
        process group and raises hookFailed when it outlives the timeout."""
        with tempfile.TemporaryFile() as err_file:
            try:
                proc = subprocess.Popen(
                    [str(script)], env=env, cwd="/", stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err_file, close_fds=True,
                    start_new_session=True)  # its own process group, so a timeout kills it all
            except OSError as e:
                raise AgentError("hookFailed", f"{point}/{script.name}: cannot run it: {e}",
                                 script=script.name, point=point) from e
            started = time.monotonic()
            try:
                rc = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                err = _tail(err_file)
                log.error("hook %s/%s timed out after %gs and was killed", point, script.name,
                          self.timeout)
                raise AgentError(
                    "hookFailed",
                    f"{point}/{script.name} timed out after {self.timeout:g}s" + (f": {err}" if err else ""),
                    script=script.name, point=point, timeout=self.timeout) from None
            except BaseException:
                _kill_group(proc)
                raise
            log.debug("hook %s/%s exited %d after %.3fs", point, script.name, rc,
                      time.monotonic() - started)
            return rc, _tail(err_file)


def _check_point(point: str) -> None:
    if point not in HOOK_POINTS:
        raise ValueError(f"unknown hook point {point!r}")


def _directories_to(path: str) -> list[str]:
    """`path` and every directory above it, up to /."""
    out = [path]
    while (parent := os.path.dirname(out[-1])) != out[-1]:
        out.append(parent)
    return out


def _check_safe(point: str, script: Path, hooks_dir: Path) -> None:
    """Refuse a script that someone other than root or the agent's user could have changed or
    replaced: the script, every directory on the way to it and every directory on the way to the
    hooks directory, each with symlinks resolved first (a symlinked hook point leads the check to
    where the script really is). A world-writable directory passes only with the sticky bit and a
    trusted owner (/tmp): others cannot rename or remove what it holds."""
    trusted = {0, os.geteuid()}
    real_script = os.path.realpath(script)
    paths = dict.fromkeys(_directories_to(real_script) + _directories_to(os.path.realpath(hooks_dir)))
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            raise AgentError("hookFailed", f"cannot check {p}: {e}", script=script.name, point=point,
                             path=p) from e
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWOTH
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            log.error("refusing hook point %s: %s is writable by group or others", point, p)
            raise AgentError("hookFailed", f"{p} is writable by group or others; refusing to run it",
                             script=script.name, point=point, path=p)
        if st.st_uid not in trusted:
            log.error("refusing hook point %s: %s is owned by uid %d", point, p, st.st_uid)
            raise AgentError("hookFailed", f"{p} is owned by uid {st.st_uid}, not by root or the agent's "
                             f"user; refusing to run it", script=script.name, point=point, path=p)


#: What the files handed to scripts are named from.
TEMP_PREFIX = "plugboard-hook-"


def _write_temp(content: str, prefix: str, suffix: str, paths: list[str], directory: Path | None) -> str:
    fd, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{prefix}", suffix=suffix, dir=directory)
    paths.append(path)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content)
    return path


def _read_back(point: str, script: Path, xml_path: str) -> str:
    try:
        with open(xml_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AgentError("hookFailed", f"{point}/{script.name} removed or locked the XML file: {e}",
                         script=script.name, point=point) from e
    try:
        etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as e:
        raise AgentError("hookFailed", f"{point}/{script.name} left malformed XML: {e}",
                         script=script.name, point=point) from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AgentError("hookFailed", f"{point}/{script.name} left XML that is not UTF-8: {e}",
                         script=script.name, point=point) from e


def _rewrite(path: str, content: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(f: BinaryIO) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - STDERR_TAIL_CHARS * 4))
    text = f.read().decode("utf-8", errors="replace").strip()
    return text[-STDERR_TAIL_CHARS:]
