"""What the command modules share: the refusal at the edge and its audit, the loaders (where tenancy
is checked), the checks every NIC hot-plug makes, and the one activate/deactivate flow of every kind."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine import agent_patterns
from engine import osinfo, scheduler
from engine import reasons as R
from engine.auth import Principal
from engine.commands.outcome import Outcome
from engine.dao import audit, db, devices, flavors as flavors_dao, hosts as hosts_dao, nics as nics_dao, \
    vms as vms_dao
from engine.dao.models import Cluster, Flavor, Host, Vm, VmDevice, VmNic
from engine.dao.vm_versions import VmVersion
from engine.devices import kinds, live, state
from engine.devices.kinds import DeviceKind
from engine.errors import (Conflict, EngineError, Forbidden, HostCallFailed, HostUnreachable, NotFound, Reason,
                           ValidationFailed)
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN, PLUG_STATUSES, RUNNING_STATUSES, STABLE, UP

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
# A name of free form (NIC, cluster, flavor): printable, no surrounding blanks (Nova's rule for flavor
# names), within the columns' 64 characters. Names reach audit messages, logs and the UI, where a
# control character could forge a line; PostgreSQL cannot store a NUL at all.
NAME_MAX = 64
NAME_RULE = f"1-{NAME_MAX} printable characters, no surrounding blanks"
_NAME_RE = re.compile(r"(?!\s)[^\x00-\x1f\x7f-\x9f]{1,%d}(?<!\s)" % NAME_MAX)

Sessions = sessionmaker[Session]


def is_running(vm: Vm) -> bool:
    return vm.status in RUNNING_STATUSES


# ---- refusing, once, at the edge ------------------------------------------------------------------

def refusal(reasons: list[Reason], message: str) -> EngineError:
    """The error for a failed canDo: Conflict (OPERATION_IN_FLIGHT) when a device operation is in
    flight -- the same answer a lost compare-and-set gets -- else ValidationFailed. All reasons are
    attached either way."""
    if any(r.code == R.DEVICE_IN_FLIGHT for r in reasons):
        return Conflict(message, reasons=reasons)
    return ValidationFailed(message, reasons=reasons)


@contextmanager
def audited(sessions: Sessions, action: str, *, vm_id: str | None = None, device_id: str | None = None,
            host_id: str | None = None) -> Iterator[None]:
    """Audit a refused action once, as a refusal (`<action>_REFUSED`), in its own transaction (the
    action's was rolled back), and let the error go on to the caller."""
    try:
        yield
    except (ValidationFailed, Conflict) as err:
        with sessions.begin() as s:
            audit.record(s, f"{action}_REFUSED", err.message, severity="warning", vm_id=vm_id,
                         device_id=device_id, host_id=host_id, reasons=[r.to_dict() for r in err.reasons],
                         fault=err.code)
        raise


@contextmanager
def unique_name(what: str, name: str) -> Iterator[None]:
    """A name two concurrent requests both found free: the database's unique constraint lets one
    win; the other is refused as a name in use (409), never an internal error."""
    try:
        yield
    except IntegrityError as err:
        text = str(err.orig).lower()
        if "unique" not in text or "name" not in text:
            raise
        raise Conflict(f"A {what} named {name} already exists.", reasons=[R.name_in_use(what, name)]) from err


# ---- shared checks --------------------------------------------------------------------------------

def check_mac_format(mac: str) -> list[Reason]:
    """A unicast MAC in colon form (the agent's schema and libvirt want exactly that)."""
    if not MAC_RE.match(mac or "") or int(mac[:2], 16) & 1:
        return [R.mac_invalid(mac)]
    return []


def name_ok(name: object) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(kind: str, name: Any) -> list[Reason]:
    """The rule of every free-form name (NAME_RULE). Check it before looking the name up: a lookup of
    a NUL fails on PostgreSQL."""
    return [] if name_ok(name) else [R.name_invalid(kind, name, NAME_RULE)]


def check_network_name(network: str) -> list[Reason]:
    return [] if agent_patterns.matches("token", network) else [R.network_name_invalid(network)]


def host_has_network(capabilities: dict[str, Any] | None, network: str) -> bool:
    """Whether the host reported `network` as a Linux bridge or a libvirt network (lists or maps)."""
    return scheduler.has_networks(capabilities, [network])


def check_live_nic_hotplug(vm: Vm, cluster: Cluster | None, host: Host | None, network: str | None) -> list[Reason]:
    """The checks of plugging (or unplugging, network=None) a NIC on a running VM: the guest OS, the
    cluster's compatibility version, the host, and the network on that host."""
    found: list[Reason] = []
    if not osinfo.os_supports(vm.os_type, osinfo.NIC_HOTPLUG):
        info = osinfo.get(vm.os_type)
        found.append(R.os_nic_hotplug_unsupported(vm.name, vm.os_type, info.name if info else None))
    if cluster is not None and not osinfo.cluster_supports(osinfo.NIC_HOTPLUG, cluster.compat_version):
        minimum = ".".join(str(p) for p in osinfo.FEATURE_MIN_CLUSTER_VERSION[osinfo.NIC_HOTPLUG])
        found.append(R.cluster_version_unsupported(cluster.name, cluster.compat_version, minimum))
    if host is None:
        found.append(R.host_not_found(vm.run_on_host))
    elif network is not None and not host_has_network(host.capabilities, network):
        found.append(R.network_not_on_host(network, host.name))
    return found


# ---- the plug and unplug every kind shares --------------------------------------------------------

def check_plug(vm: Vm, dev: VmDevice, *, plug: bool) -> list[Reason]:
    """What any activate/deactivate checks: the VM's status, the kind on a running VM, the device's
    state."""
    kind = kinds.of(dev)
    action = f"{'plug' if plug else 'unplug'} {kind.label}"
    found: list[Reason] = []
    if vm.status not in PLUG_STATUSES:
        found.append(R.vm_status_illegal(vm.name, vm.status, PLUG_STATUSES, action))
    elif vm.status == UP and not kind.hotpluggable:
        found.append(R.not_hotpluggable(kind.label, vm.name))
    if dev.plug_state != STABLE:
        found.append(R.device_in_flight(dev.id, dev.plug_state))
    elif plug == dev.is_plugged:
        found.append(R.already(kind.code, kind.describe(dev), plugged=plug))
    return found


Checks = Callable[[Session, Vm, VmDevice, Host | None], list[Reason]]


def plug_or_unplug(sessions: Sessions, hosts: HostClientFactory, *, vm_id: str, device_id: str, plug: bool,
                   kind: DeviceKind, principal: Principal, checks: Checks) -> Outcome:
    """Activate or deactivate a device of any kind. `checks(s, vm, dev, host)` is the kind's canDo (it
    gets the host a running VM is on). VM down: the desired state only, applied at the next start.
    VM up: the live runner, whose transition is committed before the host is called.

    A VM's device set changes one at a time. On PostgreSQL, a live begin of one statement reads the VM
    without locking it and begins only if no transaction locked it since (devices.begin_transition's
    `unchanged`): the lock's BEGIN, COMMIT and wait are saved for the common case where nothing else
    changes the VM. When that read cannot decide, it is done again with the VM locked."""
    with audited(sessions, kind.audit("PLUG" if plug else "UNPLUG"), vm_id=vm_id, device_id=device_id):
        # One session for both transactions, on one connection: the second one's compare-and-set
        # refreshes the row the first one loaded, which the outcome carries (the caller answers with
        # it, reading nothing).
        with db.one_connection(sessions) as s:
            begun = None
            if s.get_bind().dialect.name == "postgresql" and kind.begins_in_one_statement(plug):
                with db.autocommit(s):
                    begun = _begin(s, principal, vm_id, device_id, kind, plug, checks, locked=False)
            if begun is None:
                with s.begin():
                    begun = _begin(s, principal, vm_id, device_id, kind, plug, checks, locked=True)
            assert begun is not None        # a locked read decides
            dev, call = begun
            if call is None:
                return Outcome(id=device_id, device=dev)
            pending = live.run(sessions, hosts, call, session=s)
            return Outcome(id=device_id, pending=pending, device=dev)


def _begin(s: Session, principal: Principal, vm_id: str, device_id: str, kind: DeviceKind, plug: bool,
           checks: Checks, *, locked: bool) -> tuple[VmDevice, live.LiveCall | None] | None:
    """plug_or_unplug's first step: load, check, then either the desired state of a VM that is down (no
    call) or the live transition begun (its call). Not `locked`: None, and nothing changed, when that
    read cannot decide -- the VM is down (a cold plug takes several statements) or the VM changed
    since (state.ReadAgain)."""
    vm, dev = load_vm_and_device(s, principal, vm_id, device_id, kind, locked=locked)
    host = running_host(s, vm)
    found = checks(s, vm, dev, host)
    if found:
        raise refusal(found, f"Cannot {'plug' if plug else 'unplug'} {kind.describe(dev)} of VM {vm.name}.")
    subject = state.Subject.of(dev, vm, host)
    if vm.status == DOWN:
        if not locked:
            return None
        state.desired(s, subject, plug=plug)
        return dev, None
    assert host is not None     # the checks refuse a running VM without a host
    unchanged = None if locked else VmVersion(vm.id, vm.device_seq, host.id)
    try:
        return dev, live.prepare(s, dev, subject, host, plug=plug, unchanged=unchanged)
    except state.ReadAgain:
        return None


def check_remove(vm: Vm, dev: VmDevice) -> list[Reason]:
    """What removing a device checks: no operation in flight on it, and not plugged into a running VM
    (deactivate it first)."""
    if dev.plug_state != STABLE:
        return [R.device_in_flight(dev.id, dev.plug_state)]
    if vm.status != DOWN and dev.is_plugged:
        return [R.plugged_on_running_vm(kinds.of(dev).describe(dev), vm.name, "remove")]
    return []


def remove_device(sessions: Sessions, *, vm_id: str, device_id: str, kind: DeviceKind, principal: Principal,
                  checks: Callable[[Session, Vm], list[Reason]]) -> Outcome:
    """Remove a device row of any kind, its claim given back in the same transaction. `checks(s, vm)`
    is the kind's canDo."""
    with audited(sessions, kind.audit("REMOVE"), vm_id=vm_id, device_id=device_id):
        with sessions.begin() as s:
            vm = load_vm(s, principal, vm_id, for_update=True)
            dev = load_device(s, vm, device_id, kind)
            found = checks(s, vm)
            if found:
                raise refusal(found, f"Cannot remove {kind.describe(dev)} of VM {vm.name}.")
            name = kind.describe(dev)
            kind.give_back(s, dev.id)       # undone with the rest if the delete below loses
            if not devices.delete_if_stable(s, dev.id, unplugged_only=vm.status != DOWN):
                raise Conflict(f"Cannot remove {name}: another operation is in flight.",
                               reasons=[R.device_in_flight(device_id, "in flight")])
            audit.record(s, kind.audit("REMOVED"), f"{name} removed from VM {vm.name}", vm_id=vm.id,
                         device_id=device_id)
            return Outcome(id=device_id)


def load_vm(s: Session, principal: Principal, vm_id: str, *, for_update: bool = False) -> Vm:
    """The one loader of a command's VM, where tenancy is checked: a VM of a project the principal
    does not see answers as if it did not exist, so ids leak nothing. `for_update` locks the row until
    the transaction ends (changes to a VM's device set are serialized per VM)."""
    return _visible(principal, vm_id, vms_dao.get(s, vm_id, for_update=for_update))


def load_flavor(s: Session, principal: Principal, flavor_id: str) -> Flavor | None:
    """The flavor, if the principal may see it: a private flavor is an administrator's (Plugboard has
    no per-project flavor access), to anyone else it does not exist, as Nova answers."""
    flavor = flavors_dao.get(s, flavor_id)
    return flavor if flavor is not None and (flavor.is_public or principal.is_admin) else None


def list_flavors(s: Session, principal: Principal, **filters: Any) -> Sequence[Flavor]:
    """The flavors the principal sees (load_flavor's rule), with the dao's filters."""
    return flavors_dao.list(s, public_only=not principal.is_admin, **filters)


def list_vms(s: Session, principal: Principal, *, project_id: str | None = None, marker: str | None = None,
             limit: int | None = None) -> Sequence[Vm]:
    """The one listing of VMs: those the principal sees, by name, optionally of one project, after the
    VM `marker` (a page's last; one the principal does not see is NotFound, as load_vm answers) and at
    most `limit` of them. The project filter is in SQL, so a page counts only visible VMs."""
    after = load_vm(s, principal, marker).name if marker is not None else None
    return vms_dao.list(s, project_id=project_id, projects=None if principal.is_admin else principal.projects,
                        after_name=after, limit=limit)


def _visible(principal: Principal, vm_id: str, vm: Vm | None) -> Vm:
    if vm is None or not principal.sees_project(vm.project_id):
        reason = R.vm_not_found(vm_id)
        raise NotFound(reason.message, reasons=[reason])
    return vm


def load_vm_and_device(s: Session, principal: Principal, vm_id: str, device_id: str, kind: DeviceKind, *,
                       locked: bool = True) -> tuple[Vm, VmDevice]:
    """load_vm (for update, if `locked`) and load_device in one statement, the VM's cluster and host
    with them."""
    vm, dev = vms_dao.get_with_device(s, vm_id, device_id, locked=locked)
    return (vm := _visible(principal, vm_id, vm)), _of_kind(vm, device_id, dev, kind)


def require_admin(principal: Principal, action: str) -> None:
    if not principal.is_admin:
        reason = R.admin_required(action)
        raise Forbidden(reason.message, reasons=[reason])


def check_project(principal: Principal, project_id: str) -> None:
    """A new resource goes to one of the principal's projects (any project, for an admin): else 403.
    Whether another project exists is not said."""
    if not principal.sees_project(project_id):
        reason = R.project_not_allowed(project_id)
        raise Forbidden(reason.message, reasons=[reason])


def load_device(s: Session, vm: Vm, device_id: str, kind: DeviceKind) -> VmDevice:
    return _of_kind(vm, device_id, devices.get(s, device_id, with_nic=kind.type == kinds.NIC.type), kind)


def _of_kind(vm: Vm, device_id: str, dev: VmDevice | None, kind: DeviceKind) -> VmDevice:
    if dev is None or dev.vm_id != vm.id or dev.type != kind.type:
        raise NotFound(f"{kind.label} {device_id} of VM {vm.name} does not exist.")
    return dev


def load_nic(s: Session, vm: Vm, nic_id: str) -> VmNic:
    nic = nics_dao.get(s, vm.id, nic_id)
    if nic is None:
        raise NotFound(f"NIC {nic_id} of VM {vm.name} does not exist.")
    return nic


def load_host_by_id(s: Session, host_id: str, *, lock: bool = False) -> Host:
    """The host, or NotFound; `lock`: its row held (FOR UPDATE) until the transaction ends."""
    host = hosts_dao.get_locked(s, host_id) if lock else hosts_dao.get(s, host_id)
    if host is None:
        raise NotFound(f"Host {host_id} does not exist.", reasons=[R.host_not_found(host_id)])
    return host


def load_host(s: Session, vm: Vm) -> Host | None:
    return hosts_dao.get(s, vm.run_on_host) if vm.run_on_host else None


def running_host(s: Session, vm: Vm) -> Host | None:
    """The host a live plug or unplug goes to: a running VM's; None when the VM is down."""
    return load_host(s, vm) if vm.status == UP else None


def audit_vm_host_failure(s: Session, err: HostUnreachable | HostCallFailed, *, failed_code: str, action: str,
                          vm_id: str, vm_name: str, host: Host) -> None:
    """A VM-level host call (start, stop) failed: HOST_UNREACHABLE, or `failed_code` with the host's answer."""
    unreachable = isinstance(err, HostUnreachable)
    audit.record(s, "HOST_UNREACHABLE" if unreachable else failed_code,
                 f"Failed to {action} VM {vm_name} on host {host.name}: "
                 + (err.message if unreachable else f"host answered {err.host_code} {err.host_message}"),
                 severity="error", vm_id=vm_id, host_id=host.id, host_code=err.host_code,
                 host_message=err.host_message, host=host.name)
