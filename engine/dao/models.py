"""The engine's tables as SQLAlchemy 2.0 typed models. Constraint names follow one convention so that
alembic revisions are reviewable and portable between SQLite and PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Integer, MetaData, String, Text,
                        UniqueConstraint, Index, CheckConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, query_expression, relationship

from engine.vocab import (AUDIT_SEVERITIES, AVAILABLE, DOWN, GRAPHICS, HOST_STATUSES, HOST_UP, HOSTDEV_STATUSES,
                          MACHINES, NIC_MODELS, PLUG_STATES, ROLES, STABLE, VM_STATUSES)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Value sets are spelled once, in engine.vocab (re-exported here for the dao's callers).

__all__ = ["AUDIT_SEVERITIES", "GRAPHICS", "HOST_STATUSES", "HOSTDEV_STATUSES", "MACHINES", "NIC_MODELS",
           "PLUG_STATES", "VM_STATUSES", "Base", "Cluster", "Host", "Vm", "VmDevice", "VmNic", "HostDevice",
           "PciAlias", "Flavor", "AuditEvent", "Project", "User", "Membership", "Token", "ROLES", "new_id", "utcnow"]


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(values: tuple[str, ...]) -> str:
    return "IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    compat_version: Mapped[str] = mapped_column(String(16), default="4.7")
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Host(Base):
    __tablename__ = "hosts"
    __table_args__ = (CheckConstraint(f"status {_in(HOST_STATUSES)}", name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"))
    # The agent's JSON-RPC endpoint, e.g. http://127.0.0.1:54321/jsonrpc or https://host:54321/jsonrpc
    url: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=HOST_UP)
    # What Host.getCapabilities last said: networks, bridges, versions, hooks, whitelists.
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The agent's identity (its hostId): one agent is one host, whatever names and URLs reach it.
    agent_id: Mapped[str | None] = mapped_column(String(36), unique=True, default=None)
    # The last agent journal sequence number the monitor has consumed.
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_refresh: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cluster: Mapped[Cluster] = relationship()


class Vm(Base):
    __tablename__ = "vms"
    __table_args__ = (
        # The load of each candidate host in placement (running VMs per host), one index read per host.
        Index("ix_vms_run_on_host_status", "run_on_host", "status"),
        CheckConstraint(f"status {_in(VM_STATUSES)}", name="status"),
        CheckConstraint(f"machine {_in(MACHINES)}", name="machine"),
        CheckConstraint(f"graphics {_in(GRAPHICS)}", name="graphics"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), default="default", index=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"))
    os_type: Mapped[str] = mapped_column(String(32), default="other_linux")
    status: Mapped[str] = mapped_column(String(16), default=DOWN)
    run_on_host: Mapped[str | None] = mapped_column(ForeignKey("hosts.id", ondelete="SET NULL"), default=None)
    memory_mb: Mapped[int] = mapped_column(Integer, default=256)
    vcpus: Mapped[int] = mapped_column(Integer, default=1)
    machine: Mapped[str] = mapped_column(String(8), default="pc")
    graphics: Mapped[str] = mapped_column(String(8), default="none")
    flavor: Mapped[str | None] = mapped_column(String(64), default=None)     # a flavor's id
    # Nova-style server metadata (e.g. usb_controller_requests): kept, shown, never interpreted.
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The host's event-journal position once the VM's current run had started: lifecycle events at or
    # before it belong to an earlier run and are ignored.
    run_event_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    # Direct kernel boot and other VM-level settings sent to the agent: kernel, initrd, cmdline, serialLog.
    boot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    custom_properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # q35, while it runs: its spare root ports at start plus the ports its devices took then. The ports
    # free for hot-plug are this minus what its devices take now (engine.devices.pcie_ports).
    pcie_ports_base: Mapped[int | None] = mapped_column(Integer, default=None)
    # The user who created it, by name (as audit events name their actor); None before 0009.
    created_by: Mapped[str | None] = mapped_column(String(64), default=None)
    # The version of its device set: every transaction that locks the VM moves it (dao.vms.lock), so a
    # plug that read the VM without a lock begins only if no such transaction came in between
    # (dao.devices.begin_transition's `unchanged`).
    device_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    cluster: Mapped[Cluster] = relationship()
    host: Mapped[Host | None] = relationship()
    devices: Mapped[list["VmDevice"]] = relationship(back_populates="vm", cascade="all, delete-orphan",
                                                     passive_deletes=True)


class VmDevice(Base):
    """One row per device of a VM, of any type. `is_plugged` is the desired state; `plug_state` says
    whether a transition is in flight (compare-and-set guarded, see dao.devices)."""

    __tablename__ = "vm_devices"
    __table_args__ = (
        UniqueConstraint("vm_id", "alias"),
        CheckConstraint(f"plug_state {_in(PLUG_STATES)}", name="plug_state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))      # interface, hostdev, controller, redirdev
    device: Mapped[str] = mapped_column(String(16))    # bridge, usb, pci, ehci, spicevmc, ...
    is_plugged: Mapped[bool] = mapped_column(Boolean, default=True)
    plug_state: Mapped[str] = mapped_column(String(16), default=STABLE)
    plug_started_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the host took the transition and left it pending in the guest (an unplug the guest has not
    # released yet). An in-flight row without it whose command is over was never answered by the host.
    plug_acked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The guest address as libvirt reported it (VDSM dict); cleared on unplug. Nullable JSON columns
    # store Python None as SQL NULL (none_as_null), so "IS NULL" finds them.
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    alias: Mapped[str] = mapped_column(String(80))
    spec_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_managed: Mapped[bool] = mapped_column(Boolean, default=True)
    boot_order: Mapped[int | None] = mapped_column(Integer, default=None)
    custom_properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    # The host device a hostdev row holds: unique, so one device belongs to one VM at a time.
    host_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("host_devices.id", ondelete="SET NULL"), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    vm: Mapped[Vm] = relationship(back_populates="devices")
    nic: Mapped["VmNic | None"] = relationship(back_populates="device", cascade="all, delete-orphan",
                                               passive_deletes=True, uselist=False)
    host_device: Mapped["HostDevice | None"] = relationship(viewonly=True)   # read by views only


class VmNic(Base):
    """NIC-specific columns of an interface device (same id as its vm_devices row)."""

    __tablename__ = "vm_nics"
    __table_args__ = (
        UniqueConstraint("vm_id", "name"),
        CheckConstraint(f"model {_in(NIC_MODELS)}", name="model"),
    )

    id: Mapped[str] = mapped_column(ForeignKey("vm_devices.id", ondelete="CASCADE"), primary_key=True)
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(17), index=True)
    network: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(16), default="pv")
    linked: Mapped[bool] = mapped_column(Boolean, default=True)
    # The MAC while the NIC is plugged or in flight, else NULL: unique, so two NICs that want to be on
    # the wire can never hold one MAC, whatever the database's isolation level.
    claimed_mac: Mapped[str | None] = mapped_column(String(17), unique=True, default=None)
    # Whether another NIC claims this NIC's MAC, read with the row where a loader asks for it
    # (dao.nics.claimed_by_another); None where it did not.
    mac_taken: Mapped[bool | None] = query_expression()

    device: Mapped[VmDevice] = relationship(back_populates="nic")


class HostDevice(Base):
    """One device of a host's inventory. Its identity is what stays when it is pulled and plugged back
    (a USB device's port path, ids and serial; a PCI function's address and ids), never the node-device
    name or the bus/device numbers, which the host hands out anew on every plug."""

    __tablename__ = "host_devices"
    __table_args__ = (
        UniqueConstraint("host_id", "identity"),
        Index("ix_host_devices_host_id_name", "host_id", "name"),
        # Placement reads a host's free devices (host_devices.hosts_with_free).
        Index("ix_host_devices_host_id_status", "host_id", "status"),
        # PCI placement reads the free devices of an alias's ids across every host (dao.pci_devices),
        # from the index alone: every column its WHERE tests, then the host it groups by.
        Index("ix_host_devices_pci_placement", "vendor_id", "product_id", "status", "allowed", "present",
              "capability", "host_id"),
        CheckConstraint(f"status {_in(HOSTDEV_STATUSES)}", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)   # Nova's: {"id": 1}
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    identity: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(128))           # libvirt node-device name, as last seen
    capability: Mapped[str] = mapped_column(String(16))      # usb_device, pci
    vendor_id: Mapped[str] = mapped_column(String(8))
    product_id: Mapped[str] = mapped_column(String(8))
    vendor_name: Mapped[str | None] = mapped_column(String(255), default=None)
    product_name: Mapped[str | None] = mapped_column(String(255), default=None)
    bus: Mapped[int | None] = mapped_column(Integer, default=None)
    device: Mapped[int | None] = mapped_column(Integer, default=None)
    port_path: Mapped[str | None] = mapped_column(String(64), default=None)
    serial: Mapped[str | None] = mapped_column(String(128), default=None)
    pci_address: Mapped[str | None] = mapped_column(String(16), default=None)
    iommu_group: Mapped[int | None] = mapped_column(Integer, default=None)
    driver: Mapped[str | None] = mapped_column(String(64), default=None)
    parent: Mapped[str | None] = mapped_column(String(128), default=None)
    allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=AVAILABLE)
    vm_id: Mapped[str | None] = mapped_column(ForeignKey("vms.id", ondelete="SET NULL"), default=None,
                                              index=True)
    # False while a device a VM holds is gone from the host: it stays with its VM, flagged.
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PciAlias(Base):
    """One PCI alias of the engine's configuration (engine.pci_aliases), written at every engine start;
    several rows may share a name (it then means any of them)."""

    __tablename__ = "pci_aliases"
    __table_args__ = (UniqueConstraint("name", "vendor_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    vendor_id: Mapped[str] = mapped_column(String(8))
    product_id: Mapped[str] = mapped_column(String(8))


class Flavor(Base):
    """A VM template (Nova's flavor): size and extra specs (usb_redirection_devices, hw:usb_model, ...)."""

    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    memory_mb: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    extra_specs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_vm_id_id", "vm_id", "id"),
        CheckConstraint(f"severity {_in(AUDIT_SEVERITIES)}", name="severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    severity: Mapped[str] = mapped_column(String(8), default="info")   # info, warning, error
    code: Mapped[str] = mapped_column(String(64))                      # e.g. NIC_PLUGGED, NIC_PLUG_FAILED
    message: Mapped[str] = mapped_column(Text)
    vm_id: Mapped[str | None] = mapped_column(String(36), default=None)
    device_id: Mapped[str | None] = mapped_column(String(36), default=None)
    host_id: Mapped[str | None] = mapped_column(String(36), default=None)
    host_code: Mapped[int | None] = mapped_column(Integer, default=None)
    host_message: Mapped[str | None] = mapped_column(Text, default=None)
    vars: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Who acted: the user a request authenticated as, "local:<login>" for the command line, NULL for
    # the engine's own monitor.
    actor: Mapped[str | None] = mapped_column(String(64), default=None)


class Project(Base):
    """A tenant: its id is what vms.project_id and the Nova facade's {tenant_id} hold."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # argon2id (engine.credentials); NULL: the user has no password and authenticates by token only.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(cascade="all, delete-orphan", passive_deletes=True,
                                                           lazy="selectin")


class Membership(Base):
    """A user's role in a project: admin (everything, every project) or member (the project's VMs)."""

    __tablename__ = "memberships"
    __table_args__ = (CheckConstraint(f"role {_in(ROLES)}", name="role"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)
    role: Mapped[str] = mapped_column(String(16))


class Token(Base):
    """An API token: `id` is its public part; only the whole token's SHA-256 is stored."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(lazy="joined")
