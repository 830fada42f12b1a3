"""Custom properties become the hooks' environment variables: the contract (patterns.propertyName)
refuses a name that would change how the loader or an interpreter behaves, or replace a variable the
agent sets, when the VM is defined or the device is named -- not at the next start -- and the
properties an unplug carries are checked like a plug's."""
from __future__ import annotations

import re

import pytest

from tests.unit.vdsm_plugin.test_contract import VM
from vdsm_plugin import validation
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices

RESERVED = ["LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PATH", "BASH_ENV", "HOME", "vmId", "_hook_domxml",
            "BASH_FUNC_x", "GCONV_PATH", "PATH\n"]


def _define(props):
    return {"vmId": VM, "params": {"name": "demo", "memSize": 256, "vcpus": 1, "machine": "pc",
                                   "customProperties": props}}


@pytest.mark.parametrize("name", RESERVED)
def test_a_reserved_name_is_refused_when_the_vm_is_defined(name):
    with pytest.raises(AgentError) as err:
        validation.check_params("VM.define", _define({name: "x"}))
    assert err.value.name == "invalidParams" and "customProperties" in str(err.value)


@pytest.mark.parametrize("name", ["role", "mtu", "PATHS", "MY_LD_FLAG", "vmid", "x" * 64])
def test_other_names_are_kept(name):
    validation.check_params("VM.define", _define({name: "x"}))


@pytest.mark.parametrize("verb, key", [("VM.hotunplugNic", "nic"), ("VM.hotunplugHostdev", "hostdev"),
                                       ("VM.hotunplugRedirdev", "redirdev")])
@pytest.mark.parametrize("props", ["abc", ["x"], {"role": "db\n"}, {"LD_PRELOAD": "/tmp/x.so"}])
def test_an_unplugs_custom_properties_are_checked_like_a_plugs(verb, key, props):
    validation.check_params(verb, {"vmId": VM, key: {"alias": "ua-x1", "customProperties": {"role": "db"}}})
    with pytest.raises(AgentError) as err:
        validation.check_params(verb, {"vmId": VM, key: {"alias": "ua-x1", "customProperties": props}})
    assert err.value.name == "invalidParams" and "customProperties" in str(err.value)


def test_no_property_replaces_the_vms_id_in_the_hooks_environment():
    assert devices.hook_env(VM, {"role": "db", "vmId": "00000000-0000-0000-0000-000000000000"}) == \
        {"role": "db", "vmId": VM}


def test_the_contract_refuses_every_name_the_hook_runner_reserves_and_no_other():
    """The runner keeps its own list (it imports nothing of the agent); the contract's pattern must
    say the same, plus the agent's own vmId."""
    from vdsm_plugin import contract
    from vdsm_plugin.hooks import runner
    pattern = re.compile(contract.patterns()["propertyName"][:-1] + r"\Z")
    for name in runner._RESERVED_NAMES | {"vmId"}:
        assert not pattern.match(name), name
    for prefix in runner._RESERVED_PREFIXES:
        assert not pattern.match(prefix + "X"), prefix
    listed = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", contract.patterns()["propertyName"].split("[A-Za-z_]")[0])
    assert set(listed) - {"_hook_", "LD_", "PYTHON", "BASH_FUNC_", "GLIBC_", "GCONV_"} == \
        set(runner._RESERVED_NAMES) | {"vmId"}
    assert {p for p in listed if p.endswith("_") or p == "PYTHON"} >= set(runner._RESERVED_PREFIXES)
