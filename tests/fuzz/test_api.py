"""The native REST API fuzzed from its own OpenAPI document (schemathesis), in-process on the engine's
Flask app with FakeHost "host1" as the agent and an administrator's token on every request.

Two runs, each from an emptied database (the unit tier's: SQLite, or PostgreSQL under tox -e pg):
- stateful: schemathesis' state machine follows the links it infers (a created VM's id feeds its NICs,
  controllers, redirdevs, host devices, start/stop, delete...), so created devices get activated,
  deactivated and deleted;
- per operation: every operation alone, with schema-valid and schema-breaking data, against a VM that
  runs on host1 and one that is down, each with devices; host1 has three USB devices.

Invariants: no 5xx, and every 4xx carries the engine's coded fault
({"fault": {"code", "status", "message", "reasons": [{"code", ...}]}}). Generated path ids, and a
body's host_device_id, are mostly replaced by ids the run created (chosen from a checksum of the
generated value, so a run replays exactly): otherwise nearly every request would be a 404.

About 80 s on SQLite and 2.5 min on PostgreSQL on a 2-core machine; FUZZ_API_EXAMPLES scales both
runs, FUZZ_VERBOSE=1 prints the statuses of each operation.
"""
from __future__ import annotations

import math
import os
import random
import time
import uuid
import zlib
from typing import Any

import pytest
from sqlalchemy import delete, text

from tests.fuzz.tally import Tally, report
from tests.unit.engine.fakehost import FakeHost, FakeHosts
from tests.unit.engine.tokens import issue_token

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

from engine.app import create_app  # noqa: E402
from engine.dao.models import Base  # noqa: E402

SCALE = float(os.environ.get("FUZZ_API_EXAMPLES", "1"))
STATEFUL_SCENARIOS = int(110 * SCALE)
STATEFUL_STEPS = 25
PER_OPERATION_EXAMPLES = int(12 * SCALE)
MIN_REQUESTS = 2000
TOP_UPS = 3         # runs of other seeds, at most, that make up a stateful run below the floor

# POST route -> the path parameter its new resource's id fills, for the id substitution.
CREATES = {
    "/api/clusters": "cluster_id",
    "/api/hosts": "host_id",
    "/api/vms": "vm_id",
    "/api/flavors": "flavor_id",
    "/api/vms/{vm_id}/nics": "nic_id",
    "/api/vms/{vm_id}/controllers": "controller_id",
    "/api/vms/{vm_id}/redirdevs": "redirdev_id",
    "/api/vms/{vm_id}/hostdevs": "hostdev_id",
    "/api/vms/{vm_id}/pci_attachments": "attachment_id",
}
# Ids a generated one is left alone for: one in this many stays as drawn (unknown ids: 404s).
KEEP_DRAWN = 5
# The readiness probe answers 503 by design while the database lacks the newest alembic revision,
# which the tests' databases (made from the models) never carry.
NOT_READY_BY_DESIGN = {("GET", "/readyz")}

# host1's USB devices: the inventory that host-device attachments claim (whitelisted, so assignable).
USB_DEVICES = [{"name": f"usb_1_{i}", "capability": "usb_device", "vendorId": "0781", "productId": "5567",
                "portPath": f"1-{i}", "serial": f"S{i}", "allowed": True} for i in range(1, 4)]

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))


def coded_fault(case: Any, response: Any) -> str | None:
    """Why this answer breaks the invariants, or None: no 5xx, every 4xx a coded fault."""
    status = response.status_code
    if status == 503 and (case.method.upper(), case.path) in NOT_READY_BY_DESIGN:
        return None
    if status >= 500:
        return f"{status}: {response.text[:500]}"
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{status} without a JSON body: {response.text[:300]}"
    fault = body.get("fault") if isinstance(body, dict) else None
    if not isinstance(fault, dict) or set(body) != {"fault"}:
        return f"{status} body is not a fault: {response.text[:300]}"
    if not (isinstance(fault.get("code"), str) and fault["code"]) or fault.get("status") != status:
        return f"{status} fault without its code or status: {fault}"
    if not isinstance(fault.get("message"), str) or not isinstance(fault.get("reasons"), list):
        return f"{status} fault without message or reasons: {fault}"
    if any(not isinstance(r, dict) or not isinstance(r.get("code"), str) or not r["code"] for r in fault["reasons"]):
        return f"{status} fault with an uncoded reason: {fault}"
    return None


class Engine:
    """The app under test, its fake host and what the current run has created."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.hosts = FakeHosts()
        self.app = create_app({"sessions": sessions, "hosts": self.hosts, "TESTING": True})
        self.token = ""
        self.created: dict[str, list[str]] = {}
        self.owner: dict[str, str] = {}     # device id -> its VM's id
        self.host_id = ""

    def reset(self) -> None:
        """An empty database, a fresh host1 registered, a new admin token: each scenario starts alike,
        down to its ids. Hypothesis requires a scenario's draws to depend on its own earlier draws
        only, and answers that list rows in id order (or in creation order with ties broken by id)
        would otherwise reorder from one scenario to the next with random UUIDs and fresh sequence
        values."""
        ids = random.Random(0)
        uuid.uuid4 = lambda: uuid.UUID(int=ids.getrandbits(128), version=4)     # undone by the fixture
        with self.sessions.begin() as s:
            if s.get_bind().dialect.name == "postgresql":
                names = ", ".join(t.name for t in Base.metadata.sorted_tables)
                s.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(Base.metadata.sorted_tables):
                    s.execute(delete(table))
        self.hosts.by_name.clear()
        self.hosts.add(FakeHost("host1")).hostdevs.extend(USB_DEVICES)
        self.token = issue_token(self.sessions)
        self.created = {}
        self.owner = {}
        r = self.client().post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc"})
        assert r.status_code == 201, r.get_json()
        self.host_id = r.get_json()["id"]
        self.remember("host_id", None, r.get_json())
        r = self.client().get(f"/api/hosts/{self.host_id}/devices")
        assert r.status_code == 200, r.get_json()
        self.remember("host_device_id", None, r.get_json())

    def client(self):
        client = self.app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        return client

    def remember(self, param: str, vm_id: str | None, body: Any) -> None:
        for item in body if isinstance(body, list) else [body]:
            if isinstance(item, dict) and isinstance(item.get("id"), (str, int)):
                self.created.setdefault(param, []).append(item["id"])
                if vm_id is not None:
                    self.owner[item["id"]] = vm_id

    def prepare(self, case: Any) -> None:
        """Authenticate the case and point most of its path ids at resources that exist."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {self.token}"}
        params = case.path_parameters or {}
        for name in sorted(params, key=lambda n: n == "vm_id"):   # a device's id first: it fixes vm_id
            known = self.created.get(name)
            if not known:
                continue
            pick = zlib.crc32(repr(params[name]).encode())
            if pick % KEEP_DRAWN == 0:
                continue
            if name == "vm_id" and params[name] in known:
                continue
            chosen = known[pick % len(known)]
            params[name] = chosen
            if chosen in self.owner and "vm_id" in params:
                params["vm_id"] = self.owner[chosen]
        body = getattr(case, "body", None)
        known_devices = self.created.get("host_device_id")
        if isinstance(body, dict) and "host_device_id" in body and known_devices:
            pick = zlib.crc32(repr(body["host_device_id"]).encode())
            if pick % KEEP_DRAWN:
                body["host_device_id"] = known_devices[pick % len(known_devices)]

    def record(self, case: Any, response: Any, tally: Tally) -> None:
        tally.count(response.status_code, f"{case.method.upper()} {case.path}")
        problem = coded_fault(case, response)
        if problem is not None:
            tally.failures.append(f"{case.method} {case.formatted_path} query={case.query!r} "
                                  f"body={getattr(case, 'body', None)!r}: {problem}")
        param = CREATES.get(case.path)
        if case.method.upper() == "POST" and param and response.status_code == 201:
            self.remember(param, (case.path_parameters or {}).get("vm_id"), response.json())

    def seed(self) -> None:
        """A VM up on host1 and one down, each with a NIC, a USB controller, a SPICE redirdev and a USB
        host device."""
        c = self.client()
        for name, up in (("seed-up", True), ("seed-down", False)):
            r = c.post("/api/vms", json={"name": name, "os_type": "rhel_9x64", "graphics": "spice"})
            assert r.status_code == 201, r.get_json()
            vm = r.get_json()["id"]
            self.remember("vm_id", None, r.get_json())
            for kind, param, body in (("controllers", "controller_id", {"model": "qemu-xhci"}),
                                      ("nics", "nic_id", {"name": "nic1", "network": "ovirtmgmt"}),
                                      ("redirdevs", "redirdev_id", {"type": "spicevmc"})):
                r = c.post(f"/api/vms/{vm}/{kind}", json=body)
                assert r.status_code == 201, (kind, r.get_json())
                self.remember(param, vm, r.get_json())
            r = c.post(f"/api/vms/{vm}/hostdevs", json={"host_device_id": self.created["host_device_id"][int(up)]})
            assert r.status_code == 201, r.get_json()
            self.remember("hostdev_id", vm, r.get_json())
            if up:
                r = c.post(f"/api/vms/{vm}/start", json={"host_id": self.host_id})
                assert r.status_code == 200, r.get_json()
        r = c.post("/api/flavors", json={"name": "small", "memory_mb": 512, "vcpus": 1})
        if r.status_code == 201:
            self.remember("flavor_id", None, r.get_json())


@pytest.fixture
def engine(sessions, monkeypatch) -> Engine:
    monkeypatch.setattr(uuid, "uuid4", uuid.uuid4)     # Engine.reset replaces it; put back after the test
    eng = Engine(sessions)
    eng.reset()
    return eng


@pytest.fixture
def api_schema(engine: Engine):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", engine.app)


def _finish(request, what: str, tally: Tally, started: float) -> None:
    report(request, f"\nfuzz {what}: {tally.requests} requests in {time.monotonic() - started:.1f} s; "
                    f"statuses {tally.histogram()}")
    if os.environ.get("FUZZ_VERBOSE"):
        report(request, tally.breakdown())
    assert not tally.failures, f"{len(tally.failures)} bad answers, e.g.:\n" + "\n".join(tally.failures[:30])


def test_stateful_links(request, engine: Engine, api_schema) -> None:
    """Sequences of linked calls, each scenario from an empty engine."""
    tally = Tally()
    started = time.monotonic()

    class Machine(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            engine.reset()
            engine.seed()

        def before_call(self, case: Any) -> None:
            engine.prepare(case)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            engine.record(case, response, tally)

    config = settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, **SETTINGS)
    try:
        Machine.run(settings=config)
    except hypothesis.errors.FlakyStrategyDefinition as e:
        # Not an answer of the engine's: hypothesis met a scenario whose draws differ from an earlier
        # run of the same prefix (the engine's state steers which links are open). Said, and run once
        # more with another seed; a bad answer still fails the test through the tally.
        report(request, f"\nfuzz stateful: hypothesis stopped on inconsistent draws ({str(e).splitlines()[0]}); "
                        "running again with another seed")
        Machine.run(settings=settings(config, derandomize=False))
    # How many calls a scenario makes depends on the links the engine's answers open (1,930-2,290 over
    # the same draws): scenarios of other seeds make up what the floor is still owed.
    floor = MIN_REQUESTS * SCALE
    for _ in range(TOP_UPS):
        if tally.requests >= floor:
            break
        per_scenario = max(1.0, tally.requests / STATEFUL_SCENARIOS)
        more = math.ceil((floor - tally.requests) / per_scenario * 1.2) + 1
        report(request, f"\nfuzz stateful: {tally.requests} requests so far; {more} more scenarios")
        Machine.run(settings=settings(config, derandomize=False, max_examples=more))
    _finish(request, "stateful", tally, started)
    assert tally.requests >= floor      # the issue's floor is for the stateful run alone


def test_each_operation(request, engine: Engine, api_schema) -> None:
    """Every operation alone, with valid and with schema-breaking data, against seeded VMs."""
    tally = Tally()
    started = time.monotonic()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            engine.reset()
            engine.seed()

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=PER_OPERATION_EXAMPLES, **SETTINGS)
            def run(case: Any) -> None:
                engine.prepare(case)
                engine.record(case, case.call(), tally)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass    # no schema-breaking data for an operation without parameters
    _finish(request, "per operation", tally, started)
    assert tally.requests >= MIN_REQUESTS // 2
