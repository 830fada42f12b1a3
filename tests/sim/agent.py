"""Simulated host agents: many hosts in one process behind one HTTP server, each reachable by the engine
as its own agent URL, http://127.0.0.1:<port>/h/<n>/jsonrpc (plain HTTP on loopback; no libvirt).

Each host is a `SimHost`: the engine's in-memory agent (tests/unit/engine/fakehost.py: its domains and
devices, libvirt's address assignment, the contract's param checks of tests/contract.py, the verbs'
coded errors) given what a real agent adds on the wire:

- its own event journal with sequence numbers, answered by a real long poll: Host.getEvents with a
  `timeout` waits until an event is appended (or the time runs out), as vdsm_plugin/journal.py does;
  the journal keeps its newest `keep` events;
- its own host devices (USB devices and PCI functions) for Host.hostdevListByCaps;
- JSON-RPC 2.0 errors shaped like the agent's (vdsm_plugin/server.py): the code of schema/errors.yaml,
  its message, and data.name / data.detail;
- an optional latency added to every verb but the long poll (zero by default).

One asyncio loop serves every connection, so a thousand idle long polls cost a thousand sockets and no
threads. The hosts' state is guarded by FakeHost's lock, so tests and benchmarks may steer a host
(`agents.host(3).pending_unplug = True`, `finish_unplug`, `emit`) from any thread.

Besides the agents' URLs the server answers a few steering calls for a benchmark in another process,
POST /sim/<op> with a JSON object (see `SimAgents.control`).

In a test::

    agents = SimAgents()
    base = agents.start()                 # a thread runs the server; agents.url(1) is host 1's URL
    ...
    agents.stop()

As a process (prints {"url": ...} on its first line, serves until SIGTERM, or until stdin closes when it
is a pipe)::

    .venv/bin/python -m tests.sim.agent [--listen 127.0.0.1:0] [--latency 0] [--usb 2] [--pci 6]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import stat
import threading
import time
from typing import Any

from engine.errors import HostCallFailed, HostUnreachable
from tests import contract
from tests.unit.engine.fakehost import FakeHost

INVALID_REQUEST = -32600
PARSE_ERROR = -32700
MAX_BODY = 4 * 1024 * 1024
MAX_HOSTS = 100_000
KEEP_EVENTS = 10_000
KEEP_CALLS = 200            # calls each host remembers for FakeHost.sent() / verbs()
EVENT_KINDS = tuple(contract.verbs_schema()["verbs"]["Host.getEvents"]["result"]["properties"]["events"]
                    ["items"]["properties"]["kind"]["enum"])
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 413: "Payload Too Large"}


def usb_device(n: int, k: int) -> dict[str, Any]:
    """The k-th USB device of host n, as Host.hostdevListByCaps reports one."""
    return {"name": f"usb_1_{k + 2}", "capability": "usb_device", "vendorId": "0781", "productId": "5567",
            "vendorName": "SanDisk Corp.", "productName": "Cruzer Blade", "bus": 1, "device": k + 2,
            "portPath": f"1-{k + 1}", "serial": f"SIM{n:05d}K{k:02d}", "pciAddress": None, "iommuGroup": None,
            "driver": "usb", "parent": "usb_usb1", "allowed": True, "attachedTo": None}


def pci_function(n: int, k: int) -> dict[str, Any]:
    """The k-th PCI function of host n: two assignable NICs, then root ports no whitelist allows."""
    nic = k < 2
    address = f"0000:{k + 3:02x}:00.0"
    return {"name": f"pci_0000_{k + 3:02x}_00_0", "capability": "pci",
            "vendorId": "8086", "productId": "10d3" if nic else "7c90",
            "vendorName": "Intel Corporation", "productName": "82574L" if nic else "PCIe Root Port",
            "bus": None, "device": None, "portPath": None, "serial": None, "pciAddress": address,
            "iommuGroup": 10 + k, "driver": "e1000e" if nic else "pcieport", "parent": "computer",
            "allowed": nic, "attachedTo": None}


class SimHost(FakeHost):
    """One simulated host: a FakeHost whose journal wakes the long polls of the server it is served by."""

    def __init__(self, n: int, *, usb: int = 2, pci: int = 6, latency: float = 0.0,
                 keep: int = KEEP_EVENTS) -> None:
        super().__init__(f"sim{n}")
        self.n = n
        self.latency = float(latency)
        self.keep = keep
        self.hostdevs = [usb_device(n, k) for k in range(usb)] + [pci_function(n, k) for k in range(pci)]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    # ---- the journal ------------------------------------------------------------------------------

    def _event(self, kind: str, vm_id: str | None, alias: str | None, **data: Any) -> dict[str, Any]:
        event = super()._event(kind, vm_id, alias, **data)
        if len(self.events) > self.keep:
            del self.events[: len(self.events) - self.keep]
        if self.loop is not None and self._waiters:
            self.loop.call_soon_threadsafe(self._wake)
        return event

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def emit(self, kind: str, vm_id: str | None = None, alias: str | None = None, **data: Any) -> dict[str, Any]:
        """Append an event of `kind` (one of the contract's event kinds) to the journal."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; the contract has {', '.join(EVENT_KINDS)}")
        with self._lock:
            return dict(self._event(kind, vm_id, alias, **data))

    def read_events(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._Host_getEvents(params)

    def call(self, verb: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        try:
            return super().call(verb, params, timeout=timeout)
        finally:
            if len(self.calls) > 2 * KEEP_CALLS:
                with self._lock:
                    del self.calls[:-KEEP_CALLS]

    # ---- the host's devices -----------------------------------------------------------------------

    def plug_hostdev(self, device: dict[str, Any]) -> dict[str, Any]:
        """A device appears on the host: it joins the inventory and the journal says hostdev_added."""
        with self._lock:
            self.hostdevs.append(dict(device))
            return self.emit("hostdev_added", None, None, name=device["name"])

    def pull_hostdev(self, name: str) -> dict[str, Any]:
        """A device leaves the host: hostdev_removed."""
        with self._lock:
            self.hostdevs[:] = [d for d in self.hostdevs if d["name"] != name]
            return self.emit("hostdev_removed", None, None, name=name)

    def pending_unplugs(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"vmId": dom.vm_id, "alias": alias} for dom in self.domains.values() for alias in dom.pending]


def _answer(req_id: Any, *, result: Any = None, error: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    return json.dumps(body).encode("utf-8")


def _error(code: int, message: str, **data: Any) -> dict[str, Any]:
    name = contract.error_name(code)
    if name is not None:
        data = {"name": name, **data}
    return {"code": code, "message": message, "data": data}


class _Drop(Exception):
    """Close the connection without an answer (an unreachable host, or an answer that is lost)."""


class SimAgents:
    """Simulated hosts 0..MAX_HOSTS-1 behind one HTTP server; host n is created on first use."""

    def __init__(self, *, listen_host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, usb: int = 2,
                 pci: int = 6) -> None:
        self.listen_host = listen_host
        self.port = port
        self.latency = float(latency)
        self.usb = usb
        self.pci = pci
        self.hosts: dict[int, SimHost] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.polls_waiting = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # ---- hosts ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def url(self, n: int) -> str:
        """The agent URL of host n, as the engine registers it."""
        return f"{self.base_url}/h/{n}/jsonrpc"

    def host(self, n: int) -> SimHost:
        if not 0 <= n < MAX_HOSTS:
            raise KeyError(n)
        with self._lock:
            found = self.hosts.get(n)
            if found is None:
                found = self.hosts[n] = SimHost(n, usb=self.usb, pci=self.pci, latency=self.latency)
                found.loop = self._loop
            return found

    # ---- running ----------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Listen (on `port`, 0: any free one, then kept in `port`) and serve until `shutdown`."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for host in list(self.hosts.values()):
            host.loop = self._loop
        self._server = await asyncio.start_server(self._connection, self.listen_host, self.port, backlog=4096,
                                                  limit=MAX_BODY)
        self.port = self._server.sockets[0].getsockname()[1]
        async with self._server:
            await self._stopped.wait()

    def start(self) -> str:
        """Serve from a thread of its own; returns the base URL once listening."""
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                task = asyncio.ensure_future(self.serve())
                while self._server is None and not task.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await task
            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="sim-agents", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the simulated agents did not start listening")
        return self.base_url

    def shutdown(self) -> None:
        """Stop serving (from any thread)."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)

    def stop(self) -> None:
        self.shutdown()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    # ---- HTTP -------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _version = line.decode("latin-1").split()
                headers: dict[str, str] = {}
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = header.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY:
                    await self._send(writer, 413, _answer(None, error=_error(INVALID_REQUEST, "body too large")),
                                     close=True)
                    return
                body = await reader.readexactly(length) if length else b""
                try:
                    status, payload = await self._route(method, path, body)
                except _Drop:
                    return
                close = headers.get("connection", "").lower() == "close"
                await self._send(writer, status, payload, close=close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, UnicodeDecodeError):
            return
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, payload: bytes, *, close: bool = False) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
        writer.write(head.encode("ascii") + payload)
        await writer.drain()

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method != "POST":
            return 405, _answer(None, error=_error(INVALID_REQUEST, "only POST is accepted", reason="method"))
        if len(parts) == 3 and parts[0] == "h" and parts[2] == "jsonrpc" and parts[1].isdigit() \
                and int(parts[1]) < MAX_HOSTS:
            return 200, await self._jsonrpc(self.host(int(parts[1])), body)
        if len(parts) == 2 and parts[0] == "sim":
            try:
                return 200, json.dumps(self.control(parts[1], json.loads(body or b"{}"))).encode("utf-8")
            except (KeyError, TypeError, ValueError) as e:
                return 400, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode("utf-8")
        return 404, _answer(None, error=_error(INVALID_REQUEST, "POST JSON-RPC requests to /h/<n>/jsonrpc",
                                               reason="path"))

    async def _jsonrpc(self, host: SimHost, body: bytes) -> bytes:
        try:
            request = json.loads(body)
        except ValueError:
            return _answer(None, error={"code": PARSE_ERROR, "message": "Parse error"})
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" \
                or not isinstance(request.get("method"), str):
            return _answer(None, error=_error(INVALID_REQUEST, "Invalid Request", reason="jsonrpc"))
        req_id, verb = request.get("id"), request["method"]
        params = request.get("params", {})
        if not isinstance(params, dict):
            return _answer(req_id, error=_error(contract.INVALID_PARAMS, "Invalid params: named params only"))
        self.requests[verb] += 1
        try:
            if verb == "Host.getEvents":
                result = await self._get_events(host, params)
            else:
                if host.latency > 0:
                    await asyncio.sleep(host.latency)
                result = host.call(verb, params)
        except HostCallFailed as err:
            code = err.host_code if err.host_code is not None else contract.error_code("unexpected")
            message = err.host_message or err.message
            return _answer(req_id, error=_error(code, message, detail=message))
        except HostUnreachable:
            raise _Drop() from None
        return _answer(req_id, result=result)

    async def _get_events(self, host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
        """Host.getEvents as a long poll: the waiter is registered before the journal is read, so an
        event appended in between wakes it."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        host._waiters.add(waiter)
        try:
            result = host.call("Host.getEvents", params)      # checks the params, answers what is there
            timeout = float(params.get("timeout") or 0)
            if result["events"] or timeout <= 0 or int(params.get("after") or 0) > result["last"]:
                return result
            self.polls_waiting += 1
            try:
                await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self.polls_waiting -= 1
            return host.read_events(params)
        finally:
            host._waiters.discard(waiter)

    # ---- steering ---------------------------------------------------------------------------------

    def control(self, op: str, body: dict[str, Any]) -> Any:
        """The steering calls (POST /sim/<op>, a JSON object):

        finish_unplug {host, vmId, alias, failed?}  the guest answers a pending unplug: the journal's
                                                    device_removed (or device_removal_failed) event
        emit {host, kind, vmId?, alias?, data?}     append any event the contract knows
        set {hosts?, pending_unplug?, latency?, unreachable?}
                                                    steer every host (or the listed ones, created if new)
        pending {host}                              the host's unplugs waiting for the guest
        seed {host, vmId, name, devices}            a running domain with these devices (as VM.getDevices
                                                    reports them), e.g. to give a new simulation the VMs
                                                    an engine's database says run there
        stats {}                                    hosts, open connections, waiting polls, requests by verb
        """
        if op == "finish_unplug":
            return self.host(int(body["host"])).finish_unplug(str(body["vmId"]), str(body["alias"]),
                                                              failed=bool(body.get("failed", False)))
        if op == "emit":
            return self.host(int(body["host"])).emit(str(body["kind"]), body.get("vmId"), body.get("alias"),
                                                     **dict(body.get("data") or {}))
        if op == "set":
            listed = body.get("hosts")
            targets = [self.host(int(n)) for n in listed] if listed is not None else list(self.hosts.values())
            for host in targets:
                for key in ("pending_unplug", "unreachable"):
                    if key in body:
                        setattr(host, key, bool(body[key]))
                if "latency" in body:
                    host.latency = float(body["latency"])
            if listed is None and "latency" in body:
                self.latency = float(body["latency"])
            return {"hosts": len(targets)}
        if op == "pending":
            return self.host(int(body["host"])).pending_unplugs()
        if op == "seed":
            host = self.host(int(body["host"]))
            with host._lock:
                dom = host.add_domain(str(body["vmId"]), str(body["name"]))
                dom.params = {"name": str(body["name"]), "machine": str(body.get("machine") or "pc")}
                dom.devices[:] = [{"type": "controller", "device": "pci", "alias": "pci.0", "address": None,
                                   "model": "pci-root", "index": 0}, *map(dict, body.get("devices") or [])]
            return {"vmId": dom.vm_id, "devices": len(dom.devices)}
        if op == "stats":
            return {"hosts": len(self.hosts), "connections": self.connections, "pollsWaiting": self.polls_waiting,
                    "requests": dict(self.requests), "time": time.time()}
        raise KeyError(f"no steering call {op!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="address:port (port 0: any free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every verb but the long poll")
    parser.add_argument("--usb", type=int, default=2, help="USB devices per host")
    parser.add_argument("--pci", type=int, default=6, help="PCI functions per host")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    agents = SimAgents(listen_host=address or "127.0.0.1", port=int(port or 0), latency=args.latency,
                       usb=args.usb, pci=args.pci)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(agents.serve())
        while agents._server is None and not task.done():
            await asyncio.sleep(0.005)
        print(json.dumps({"url": agents.base_url}), flush=True)
        loop.add_signal_handler(signal.SIGTERM, agents.shutdown)
        loop.add_signal_handler(signal.SIGINT, agents.shutdown)
        if stat.S_ISFIFO(os.fstat(0).st_mode):  # a parent's pipe: its closing (the parent exited) ends us too
            def stdin_readable() -> None:
                if not os.read(0, 65536):
                    agents.shutdown()
            loop.add_reader(0, stdin_readable)
        await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
