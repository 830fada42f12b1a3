"""Every agent verb fuzzed from its schema in schema/verbs.yaml (hypothesis, with schemathesis' JSON
Schema strategies), through the agent's JSON-RPC dispatcher in-process, on libvirt's test driver.

Each verb gets params valid per its schema (aimed, most of the time, at the VMs and device aliases the
host has) and params that break it (a required key gone, an unknown key, a value of any JSON type, not
an object at all). Invariants, per call:
- the answer is a result or a JSON-RPC error whose code is in schema/errors.yaml; never `unexpected`
  (16) from an uncaught exception (a libvirt failure the verb maps to it carries data.libvirtCode);
- a result is valid per the verb's result schema;
- after an error the host is as it was: the same domains, each with the same state and the same live
  and inactive XML.

The host is a test-driver connection of its own (test:///<file>: private state, the node devices of
tests/unit/vdsm_plugin/fixtures/libvirt_test_node.xml) holding a running Plugboard VM, a shut-off one,
and a domain Plugboard did not define. The test driver cannot attach, detach or update devices, so the
device verbs reach libvirt and fail there: the rollback path is what they exercise.
"""
from __future__ import annotations

import copy
import json
import os
import time
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.contract import error_table, validator, verbs_schema
from tests.fuzz.tally import Tally, report

libvirt = pytest.importorskip("libvirt")
pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# schemathesis' own generator for a JSON Schema (hypothesis-jsonschema does not run on this hypothesis)
from schemathesis.generation.jsonschema.builder import build as from_json_schema  # noqa: E402

from vdsm_plugin import config, verbs  # noqa: E402
from vdsm_plugin.agent import Agent  # noqa: E402
from vdsm_plugin import server  # noqa: E402

NODE_XML = Path(__file__).resolve().parents[1] / "unit" / "vdsm_plugin" / "fixtures" / "libvirt_test_node.xml"
EXAMPLES = int(os.environ.get("FUZZ_VERB_EXAMPLES", "50"))
UNEXPECTED = 16
CODES = {int(entry["code"]) for entry in error_table().values()}
SETTINGS = dict(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))

VM_UP = "6f1c2a7e-3b7d-4c55-9d0e-1a2b3c4d5e01"
VM_DOWN = "6f1c2a7e-3b7d-4c55-9d0e-1a2b3c4d5e02"
FOREIGN = "6f1c2a7e-3b7d-4c55-9d0e-1a2b3c4d5e03"   # a domain of the host that Plugboard did not define
ALIASES = ["ua-nic1", "ua-nic2", "ua-ctl1", "ua-redir1", "ua-usb1"]
NIC = {"type": "interface", "device": "bridge", "network": "pbbr0", "nicModel": "pv"}
FOREIGN_XML = f"""<domain type='test'><name>foreign</name><uuid>{FOREIGN}</uuid><memory>65536</memory>
<os><type>hvm</type></os><devices><interface type='bridge'><source bridge='pbbr0'/>
<mac address='52:54:00:00:00:99'/></interface></devices></domain>"""


class _NoNvram(types.ModuleType):
    """libvirt as the agent sees it, except that undefining asks for no NVRAM removal: the test driver
    has no firmware files and refuses the flag, which QEMU's driver accepts."""

    def __getattr__(self, name: str) -> Any:
        return getattr(libvirt, name)

    VIR_DOMAIN_UNDEFINE_NVRAM = 0


class Host:
    """An agent on a private test-driver host, its dispatcher, and the host's state for comparison."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "hooks").mkdir()
        uri = f"test://{NODE_XML}"
        cfg = config.load(None, state_dir=str(tmp / "state"), hooks_dir=str(tmp / "hooks"), libvirt_uri=uri,
                          unplug_timeout=0.2, lock_timeout=2.0)
        self.agent = Agent.start(cfg)
        self.agent.hv._lv = _NoNvram("libvirt")
        self.methods = server.jsonrpc_methods(verbs.METHODS)
        self.conn = self.agent.hv._conn
        self.conn.defineXML(FOREIGN_XML)
        up = self.call("VM.create", {"vmId": VM_UP, "params": {
            "name": "fuzz-up", "memSize": 256, "vcpus": 1, "machine": "q35",
            "devices": [{**NIC, "alias": "ua-nic1", "macAddr": "56:6f:1a:00:00:01"}]}})
        down = self.call("VM.define", {"vmId": VM_DOWN, "params": {
            "name": "fuzz-down", "memSize": 256, "vcpus": 1, "machine": "pc", "graphics": "spice",
            "devices": [{**NIC, "alias": "ua-nic2", "macAddr": "56:6f:1a:00:00:02"},
                        {"type": "controller", "device": "usb", "model": "ich9-ehci1", "index": 1,
                         "alias": "ua-ctl1"},
                        {"type": "redirdev", "device": "spicevmc", "alias": "ua-redir1"}]}})
        assert "result" in up and "result" in down, (up, down)

    def close(self) -> None:
        self.agent.hv.close()
        self.agent.journal.close() if hasattr(self.agent.journal, "close") else None

    def call(self, verb: str, params: Any) -> dict[str, Any]:
        from jsonrpcserver import dispatch

        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": verb, "params": params})
        # as the agent's server dispatches (its own request-shape check, where it has one)
        shape = {"validator": server.request_shape} if hasattr(server, "request_shape") else {}
        return json.loads(dispatch(request, methods=self.methods, context=self.agent, **shape))

    def state(self) -> list[tuple[Any, ...]]:
        """Every domain of the host: uuid, name, state, persistence, live XML, inactive XML."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE
        return sorted((d.UUIDString(), d.name(), d.state()[0], d.isPersistent(), d.XMLDesc(0), d.XMLDesc(flags))
                      for d in self.conn.listAllDomains(0))


@pytest.fixture
def host(tmp_path: Path):
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.close()


def _params_schema(verb: str) -> dict[str, Any]:
    doc = verbs_schema()
    return {**doc["verbs"][verb]["params"], "definitions": doc["definitions"]}


def _aimed(verb: str, params: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Most of the time, point vmId at one of the host's domains (a new one, mostly, for the verbs that
    make one) and aliases at its devices."""
    params = copy.deepcopy(params)
    if "vmId" in params:
        known = [VM_UP, VM_DOWN, VM_UP.upper(), FOREIGN]
        # hypothesis leans to a sampled list's first entries
        choices = [params["vmId"]] * 4 + known if verb in ("VM.create", "VM.define") else known + [params["vmId"]]
        params["vmId"] = data.draw(st.sampled_from(choices))
    for value in params.values():
        if isinstance(value, dict) and "alias" in value and data.draw(st.integers(0, 3)):
            value["alias"] = data.draw(st.sampled_from(ALIASES))
    if "timeout" in params:
        params["timeout"] = 0      # Host.getEvents: no long poll
    vm_params = params.get("params")
    if isinstance(vm_params, dict) and not data.draw(st.booleans()):
        for name in ("kernel", "initrd", "serialLog"):      # random paths are refused: pathNotAllowed
            vm_params.pop(name, None)
    return params


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3),
                    max_leaves=8)


def _broken(verb: str, valid: dict[str, Any], data: st.DataObject) -> Any:
    """Params that break the verb's schema (or the JSON-RPC call's shape)."""
    schema = verbs_schema()["verbs"][verb]["params"]
    how = data.draw(st.sampled_from(["drop", "extra", "retype", "not-an-object"]))
    params = copy.deepcopy(valid)
    if how == "drop" and schema.get("required"):
        del params[data.draw(st.sampled_from(sorted(schema["required"])))]
    elif how == "retype" and params:
        params[data.draw(st.sampled_from(sorted(params)))] = data.draw(JSON)
    elif how == "not-an-object":
        return data.draw(st.lists(JSON, max_size=3) | st.integers() | st.text(max_size=10))
    else:
        params[data.draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in params))] = data.draw(JSON)
    return params


def _check(host: Host, verb: str, params: Any, answer: dict[str, Any], before: list[Any], tally: Tally) -> None:
    where = f"{verb} {json.dumps(params, default=str)[:400]}"
    if "result" in answer:
        tally.count("result", verb)
        problems = sorted(validator(verb, "result").iter_errors(answer["result"]), key=lambda e: list(e.path))
        if problems:
            tally.failures.append(f"{where}: result breaks the schema: {problems[0].message}")
        return
    error = answer.get("error") or {}
    code = error.get("code")
    tally.count(code, verb)
    data = error.get("data") or {}
    if code not in CODES:
        tally.failures.append(f"{where}: error code {code} is not in errors.yaml: {error}")
    elif code == UNEXPECTED and "libvirtCode" not in data:
        tally.failures.append(f"{where}: uncaught exception: {error}")
    after = host.state()
    if after != before:
        changed = sorted({d[0] for d in before} ^ {d[0] for d in after}) or \
            [b[0] for b, a in zip(before, after) if b != a]
        tally.failures.append(f"{where}: answered {code} but the host changed (domains {changed})")


VERBS = sorted(verbs_schema()["verbs"])
_TALLY = Tally()


@pytest.mark.parametrize("verb", VERBS)
def test_verb(request, host: Host, verb: str) -> None:
    tally = Tally()
    started = time.monotonic()

    @given(data=st.data(), valid=from_json_schema(_params_schema(verb), draft=7, formats={}), broken=st.booleans())
    @settings(**SETTINGS)
    def run(data: st.DataObject, valid: dict[str, Any], broken: bool) -> None:
        params = _aimed(verb, valid, data)
        if broken:
            params = _broken(verb, params, data)
        before = host.state()
        _check(host, verb, params, host.call(verb, params), before, tally)

    run()
    for key, n in tally.statuses.items():
        _TALLY.statuses[key] += n
    _TALLY.requests += tally.requests
    report(request, f"\nfuzz {verb}: {tally.requests} calls in {time.monotonic() - started:.1f} s; "
                    f"answers {tally.histogram()}")
    assert not tally.failures, f"{len(tally.failures)} bad answers, e.g.:\n" + "\n".join(tally.failures[:10])
    assert tally.requests >= EXAMPLES // 2


def test_each_verb_was_called(request) -> None:
    """The summary of the run above (when it ran in this session)."""
    if _TALLY.requests:
        report(request, f"\nfuzz agent verbs: {_TALLY.requests} calls over {len(VERBS)} verbs; "
                        f"answers {_TALLY.histogram()}")
    assert set(VERBS) == set(verbs.METHODS)
    assert uuid.UUID(VM_UP) and uuid.UUID(VM_DOWN)
