"""The canDo reasons, declared once: a stable code, a readable message and the variables that explain it.

Codes are part of the API (REST faults list them); messages are for people and may change.
"""
from __future__ import annotations

from typing import Any

from engine.errors import Reason

VM_STATUS_ILLEGAL = "VM_STATUS_ILLEGAL"
OS_NIC_HOTPLUG_UNSUPPORTED = "OS_NIC_HOTPLUG_UNSUPPORTED"
CLUSTER_VERSION_HOTPLUG_UNSUPPORTED = "CLUSTER_VERSION_HOTPLUG_UNSUPPORTED"
NETWORK_NOT_ON_HOST = "NETWORK_NOT_ON_HOST"
MAC_IN_USE = "MAC_IN_USE"
MAC_INVALID = "MAC_INVALID"
NIC_MODEL_UNSUPPORTED = "NIC_MODEL_UNSUPPORTED"
NETWORK_NAME_INVALID = "NETWORK_NAME_INVALID"
DEVICE_IN_FLIGHT = "DEVICE_IN_FLIGHT"
NIC_PLUGGED_ON_RUNNING_VM = "NIC_PLUGGED_ON_RUNNING_VM"
NOT_HOTPLUGGABLE = "NOT_HOTPLUGGABLE"
PLUGGED_ON_RUNNING_VM = "PLUGGED_ON_RUNNING_VM"
NAME_IN_USE = "NAME_IN_USE"
NAME_INVALID = "NAME_INVALID"
VM_NOT_DOWN = "VM_NOT_DOWN"
VM_NOT_RUNNING = "VM_NOT_RUNNING"
NO_HOST_AVAILABLE = "NO_HOST_AVAILABLE"
NO_HOST_WITH_USB_DEVICES = "NO_HOST_WITH_USB_DEVICES"
HOST_NOT_FOUND = "HOST_NOT_FOUND"
HOST_NOT_UP = "HOST_NOT_UP"
HOST_NOT_IN_CLUSTER = "HOST_NOT_IN_CLUSTER"
HOST_IN_MAINTENANCE = "HOST_IN_MAINTENANCE"
HOST_NOT_IN_MAINTENANCE = "HOST_NOT_IN_MAINTENANCE"
HOST_RUNS_VMS = "HOST_RUNS_VMS"
HOST_DEVICES_HELD = "HOST_DEVICES_HELD"
HOST_NOT_UNREACHABLE = "HOST_NOT_UNREACHABLE"
HOST_VMS_CHANGING = "HOST_VMS_CHANGING"
CLUSTER_NOT_FOUND = "CLUSTER_NOT_FOUND"
OS_TYPE_UNKNOWN = "OS_TYPE_UNKNOWN"
COMPAT_VERSION_INVALID = "COMPAT_VERSION_INVALID"
FIELD_INVALID = "FIELD_INVALID"
URL_INVALID = "URL_INVALID"
AGENT_REGISTERED = "AGENT_REGISTERED"


def reason(code: str, message: str, **vars: Any) -> Reason:
    return Reason(code=code, message=message, vars=vars)


INVALID_FIELD = "INVALID_FIELD"


def invalid_field(path: str, errors: list[str]) -> Reason:
    """A request's field (dotted path; `_schema`: the whole body) that is not valid, with why."""
    whole = path == "_schema" or path.endswith("._schema")
    message = "; ".join(errors) if whole else f"{path}: " + "; ".join(errors)
    return reason(INVALID_FIELD, message, field=path, errors=list(errors))


def vm_status_illegal(vm_name: str, status: str, allowed: tuple[str, ...], action: str) -> Reason:
    return reason(VM_STATUS_ILLEGAL,
                  f"Cannot {action}: VM {vm_name} is {status}; allowed when {' or '.join(allowed)}.",
                  vm=vm_name, status=status, allowed=list(allowed))


def os_nic_hotplug_unsupported(vm_name: str, os_type: str, os_name: str | None = None) -> Reason:
    return reason(OS_NIC_HOTPLUG_UNSUPPORTED,
                  f"The guest OS {os_name or os_type} of VM {vm_name} does not support NIC hot plug; stop the VM "
                  "first.", vm=vm_name, os_type=os_type)


def cluster_version_unsupported(cluster_name: str, version: str, minimum: str) -> Reason:
    return reason(CLUSTER_VERSION_HOTPLUG_UNSUPPORTED,
                  f"Cluster {cluster_name} has compatibility version {version}; NIC hot plug needs {minimum} "
                  f"or later.", cluster=cluster_name, version=version, minimum=minimum)


def network_not_on_host(network: str, host_name: str) -> Reason:
    return reason(NETWORK_NOT_ON_HOST, f"Network {network} is not available on host {host_name}.",
                  network=network, host=host_name)


def mac_in_use(mac: str) -> Reason:
    return reason(MAC_IN_USE, f"MAC address {mac} is already used by a plugged NIC.", mac=mac)


def mac_invalid(mac: str) -> Reason:
    return reason(MAC_INVALID, f"{mac!r} is not a unicast MAC address (xx:xx:xx:xx:xx:xx).", mac=mac)


def nic_model_unsupported(model: str, allowed: tuple[str, ...]) -> Reason:
    return reason(NIC_MODEL_UNSUPPORTED, f"NIC model {model!r} is not one of {', '.join(allowed)}.",
                  model=model, allowed=list(allowed))


def network_name_invalid(network: str) -> Reason:
    return reason(NETWORK_NAME_INVALID, f"{network!r} is not a valid network name "
                  "(1-64 letters, digits, '_', '.', ':', '-').", network=network)


def device_in_flight(device_id: str, plug_state: str) -> Reason:
    return reason(DEVICE_IN_FLIGHT, f"Device {device_id} is {plug_state}; wait for that operation to finish.",
                  device_id=device_id, plug_state=plug_state)


def plugged_on_running_vm(device: str, vm_name: str, action: str) -> Reason:
    return reason(PLUGGED_ON_RUNNING_VM, f"Cannot {action} {device}: it is plugged and VM {vm_name} is running; "
                  "deactivate it first.", device=device, vm=vm_name)


def nic_plugged_on_running_vm(nic_name: str, vm_name: str, action: str) -> Reason:
    return reason(NIC_PLUGGED_ON_RUNNING_VM,
                  f"Cannot {action} NIC {nic_name}: it is plugged and VM {vm_name} is running; deactivate it "
                  f"first.", nic=nic_name, vm=vm_name)


def already(kind_code: str, device: str, *, plugged: bool) -> Reason:
    """<KIND>_ALREADY_PLUGGED / <KIND>_ALREADY_UNPLUGGED: e.g. NIC_ALREADY_PLUGGED."""
    word = "plugged" if plugged else "unplugged"
    return reason(f"{kind_code}_ALREADY_{word.upper()}", f"{device} is already {word}.", device=device)


def not_hotpluggable(label: str, vm_name: str) -> Reason:
    return reason(NOT_HOTPLUGGABLE, f"A {label} can only be added, removed, activated or deactivated while the "
                  f"VM is down; VM {vm_name} is running: stop the VM first.", kind=label, vm=vm_name)


def name_in_use(kind: str, name: str) -> Reason:
    return reason(NAME_IN_USE, f"A {kind} named {name} already exists.", kind=kind, name=name)


def name_invalid(kind: str, name: str, rule: str) -> Reason:
    return reason(NAME_INVALID, f"{name!r} is not a valid {kind} name ({rule}).", kind=kind, name=name)


def vm_not_down(vm_name: str, status: str, action: str) -> Reason:
    return reason(VM_NOT_DOWN, f"Cannot {action}: VM {vm_name} is {status}; it must be down.",
                  vm=vm_name, status=status)


def vm_not_running(vm_name: str, status: str) -> Reason:
    return reason(VM_NOT_RUNNING, f"VM {vm_name} is {status}, not running.", vm=vm_name, status=status)


def no_host_available(cluster_name: str, networks: list[str]) -> Reason:
    needs = f" with networks {', '.join(networks)}" if networks else ""
    return reason(NO_HOST_AVAILABLE, f"No host of cluster {cluster_name} is up{needs}.",
                  cluster=cluster_name, networks=networks)


def no_host_with_usb_devices(cluster_name: str, flavor: str, missing: list[str]) -> Reason:
    """`missing`: each request of the flavor no host can meet, with what is free of it ("1 USB device
    0781:5567 (0 free)"); empty when each can be met somewhere but no one host meets them all."""
    what = ", ".join(missing) if missing else "all of its USB devices on one host"
    return reason(NO_HOST_WITH_USB_DEVICES, f"No up host of cluster {cluster_name} with the VM's networks has "
                  f"the USB devices flavor {flavor} asks for free: missing {what}.", cluster=cluster_name,
                  flavor=flavor, missing=missing)


def host_not_found(host_id: str | None) -> Reason:
    return reason(HOST_NOT_FOUND, f"Host {host_id} does not exist.", host_id=host_id)


def host_not_up(host_name: str, status: str) -> Reason:
    return reason(HOST_NOT_UP, f"Host {host_name} is {status}.", host=host_name, status=status)


def host_not_in_cluster(host_name: str, cluster_name: str) -> Reason:
    return reason(HOST_NOT_IN_CLUSTER, f"Host {host_name} is not in cluster {cluster_name}.",
                  host=host_name, cluster=cluster_name)


def host_in_maintenance(host_name: str) -> Reason:
    return reason(HOST_IN_MAINTENANCE, f"Host {host_name} is already in maintenance.", host=host_name)


def host_not_in_maintenance(host_name: str, status: str, action: str, *, hint: str = "") -> Reason:
    """`action`: what only a host in maintenance allows ("remove host x"); `hint`: what to do about it."""
    return reason(HOST_NOT_IN_MAINTENANCE, f"Cannot {action}: host {host_name} is {status}, not in maintenance"
                  + (f"; {hint}." if hint else "."), host=host_name, status=status)


def host_runs_vms(host_name: str, vm_names: list[str], *, unreachable: bool = False) -> Reason:
    """`unreachable`: the host cannot be reached, so its VMs cannot be stopped through it."""
    then = " or, if the host was rebooted or is off, confirm that it was" if unreachable else ""
    return reason(HOST_RUNS_VMS, f"Host {host_name} runs VMs {', '.join(vm_names)}: stop them first{then}.",
                  host=host_name, vms=vm_names)


def host_not_unreachable(host_name: str, status: str) -> Reason:
    return reason(HOST_NOT_UNREACHABLE, f"Host {host_name} is {status}, not unreachable: only a host the engine "
                  "cannot reach is confirmed rebooted (stop its VMs instead).", host=host_name, status=status)


def host_vms_changing(host_name: str, vm_names: list[str]) -> Reason:
    return reason(HOST_VMS_CHANGING, f"VMs {', '.join(vm_names)} are starting or stopping on host {host_name}: "
                  "wait until their commands end (at most the host call timeout).", host=host_name, vms=vm_names)


def host_devices_held(host_name: str, held: list[tuple[str, str]]) -> Reason:
    """`held`: (device name, VM name) pairs."""
    what = ", ".join(f"{device} ({vm})" for device, vm in held)
    return reason(HOST_DEVICES_HELD, f"VMs hold devices of host {host_name}: {what}; detach them first.",
                  host=host_name, devices=[{"device": d, "vm": v} for d, v in held])


def cluster_not_found(cluster_id: str) -> Reason:
    return reason(CLUSTER_NOT_FOUND, f"Cluster {cluster_id} does not exist.", cluster_id=cluster_id)


def os_type_unknown(os_type: str) -> Reason:
    return reason(OS_TYPE_UNKNOWN, f"Unknown OS type {os_type!r}.", os_type=os_type)


def compat_version_invalid(version: str) -> Reason:
    return reason(COMPAT_VERSION_INVALID, f"{version!r} is not a compatibility version (MAJOR.MINOR).",
                  version=version)


def field_invalid(field: str, value: Any, rule: str) -> Reason:
    return reason(FIELD_INVALID, f"{field}={value!r}: {rule}.", field=field, value=value)


def agent_registered(url: str, agent_id: str, host_name: str) -> Reason:
    return reason(AGENT_REGISTERED, f"The agent at {url} is already registered as host {host_name} (agent "
                  f"{agent_id}): one agent is one host.", url=url, agent_id=agent_id, host=host_name)


def url_invalid(url: str) -> Reason:
    return reason(URL_INVALID, f"{url!r} is not an agent URL: http:// or https://, a host and a port, and an "
                  "optional path, without credentials, query or fragment.", url=url)


# ---- USB controllers and redirection ---------------------------------------------------------------

CONTROLLER_TYPE_UNSUPPORTED = "CONTROLLER_TYPE_UNSUPPORTED"
CONTROLLER_MODEL_UNKNOWN = "CONTROLLER_MODEL_UNKNOWN"
CONTROLLER_INDEX_IN_USE = "CONTROLLER_INDEX_IN_USE"
CONTROLLER_INDEX_INVALID = "CONTROLLER_INDEX_INVALID"
CONTROLLER_CARRIES_DEVICES = "CONTROLLER_CARRIES_DEVICES"
REDIRDEV_TYPE_UNSUPPORTED = "REDIRDEV_TYPE_UNSUPPORTED"
USB_DISABLED_ALONE = "USB_DISABLED_ALONE"
USB_PORTS_SHORT = "USB_PORTS_SHORT"
SPICE_REQUIRED = "SPICE_REQUIRED"
NO_FREE_USB_PORT = "NO_FREE_USB_PORT"


def controller_type_unsupported(kind: str) -> Reason:
    return reason(CONTROLLER_TYPE_UNSUPPORTED, f"Controller type {kind!r} is not supported; only 'usb' is.",
                  type=kind)


def controller_model_unknown(model: str, allowed: tuple[str, ...]) -> Reason:
    return reason(CONTROLLER_MODEL_UNKNOWN, f"USB controller model {model!r} is not one of {', '.join(allowed)}.",
                  model=model, allowed=list(allowed))


def controller_index_in_use(index: int, vm_name: str) -> Reason:
    return reason(CONTROLLER_INDEX_IN_USE, f"VM {vm_name} already has a USB controller with index {index}; "
                  "indexes are unique per VM (omit index to take the next free one).", index=index, vm=vm_name)


def controller_index_invalid(index: int, maximum: int) -> Reason:
    return reason(CONTROLLER_INDEX_INVALID, f"USB controller index {index} is out of range (0 to {maximum}).",
                  index=index, maximum=maximum)


def controller_carries_devices(controller: str, devices: list[str]) -> Reason:
    return reason(CONTROLLER_CARRIES_DEVICES, f"USB controller {controller} still carries {', '.join(devices)}; "
                  "remove or deactivate them first.", controller=controller, devices=devices)


def usb_disabled_alone(vm_name: str) -> Reason:
    return reason(USB_DISABLED_ALONE, f"Model none disables USB on VM {vm_name}: it cannot stand next to another "
                  "USB controller (remove the others, or the none controller, first).", vm=vm_name)


def usb_ports_short(controller: str, devices: int, ports: int) -> Reason:
    return reason(USB_PORTS_SHORT, f"Without USB controller {controller} the VM's {devices} active USB devices "
                  f"would have {ports} ports; deactivate some first.", controller=controller, devices=devices,
                  ports=ports)


def redirdev_type_unsupported(kind: str) -> Reason:
    return reason(REDIRDEV_TYPE_UNSUPPORTED, f"USB redirection type {kind!r} is not one of spicevmc, tcp.",
                  type=kind)


def spice_required(vm_name: str, graphics: str) -> Reason:
    return reason(SPICE_REQUIRED, f"SPICE USB redirection needs SPICE graphics; VM {vm_name} has {graphics}.",
                  vm=vm_name, graphics=graphics)


def no_free_usb_port(vm_name: str) -> Reason:
    return reason(NO_FREE_USB_PORT, f"VM {vm_name} has no free USB port: add a USB controller (while the VM is "
                  "down) or deactivate another USB device.", vm=vm_name)


HOST_DEVICE_BUSY = "HOST_DEVICE_BUSY"


def host_device_busy(name: str, status: str) -> Reason:
    return reason(HOST_DEVICE_BUSY, f"Host device {name} is {status}, not available: another VM holds it or "
                  "the host does not offer it.", device=name, status=status)


# ---- authentication and roles --------------------------------------------------------------------
CREDENTIAL_MISSING = "CREDENTIAL_MISSING"
CREDENTIAL_INVALID = "CREDENTIAL_INVALID"
ADMIN_REQUIRED = "ADMIN_REQUIRED"
PROJECT_NOT_ALLOWED = "PROJECT_NOT_ALLOWED"
VM_NOT_FOUND = "VM_NOT_FOUND"


def credential_missing(how: str) -> Reason:
    return reason(CREDENTIAL_MISSING, f"This request needs a credential: {how}.", how=how)


def credential_invalid() -> Reason:
    # One reason for unknown, malformed, expired and revoked tokens: the answer tells a guesser nothing.
    return reason(CREDENTIAL_INVALID, "The credential is not valid: it is unknown, malformed, expired or revoked.")


def admin_required(action: str) -> Reason:
    return reason(ADMIN_REQUIRED, f"Only an administrator may {action}.", action=action)


def project_not_allowed(project_id: str) -> Reason:
    return reason(PROJECT_NOT_ALLOWED, f"You are not a member of project {project_id}.", project_id=project_id)


def vm_not_found(vm_id: str) -> Reason:
    return reason(VM_NOT_FOUND, f"VM {vm_id} does not exist.", id=vm_id)


PROJECT_NOT_FOUND = "PROJECT_NOT_FOUND"
ROLE_UNKNOWN = "ROLE_UNKNOWN"
PASSWORD_TOO_SHORT = "PASSWORD_TOO_SHORT"
EXPIRY_INVALID = "EXPIRY_INVALID"


def project_not_found(project_id: str) -> Reason:
    return reason(PROJECT_NOT_FOUND, f"Project {project_id} does not exist.", project_id=project_id)


def role_unknown(role: str, allowed: tuple[str, ...]) -> Reason:
    return reason(ROLE_UNKNOWN, f"Role {role} is not one of {', '.join(allowed)}.", role=role, allowed=list(allowed))


def password_too_short(minimum: int) -> Reason:
    return reason(PASSWORD_TOO_SHORT, f"A password has at least {minimum} characters.", minimum=minimum)


def expiry_invalid(days: object, maximum: int) -> Reason:
    return reason(EXPIRY_INVALID, f"A token expires in 1 to {maximum} days, not {days}.", days=days, maximum=maximum)


# ---- USB host devices --------------------------------------------------------------------------
HOST_DEVICE_NOT_FOUND = "HOST_DEVICE_NOT_FOUND"
HOST_DEVICE_NOT_ALLOWED = "HOST_DEVICE_NOT_ALLOWED"
HOST_DEVICE_GONE = "HOST_DEVICE_GONE"
HOST_DEVICE_CAPABILITY = "HOST_DEVICE_CAPABILITY"
HOST_DEVICE_ON_OTHER_HOST = "HOST_DEVICE_ON_OTHER_HOST"
HOST_DEVICES_PIN_VM = "HOST_DEVICES_PIN_VM"
HOST_DEVICE_REQUIRED_MISSING = "HOST_DEVICE_REQUIRED_MISSING"


def host_device_not_found(device_id: object) -> Reason:
    return reason(HOST_DEVICE_NOT_FOUND, f"Host device {device_id} does not exist.", id=device_id)


def host_device_not_allowed(name: str, host: str) -> Reason:
    return reason(HOST_DEVICE_NOT_ALLOWED, f"Host device {name} is not on the whitelist of host {host}.",
                  device=name, host=host)


def host_device_gone(name: str, host: str) -> Reason:
    return reason(HOST_DEVICE_GONE, f"Host device {name} is no longer plugged into host {host}.",
                  device=name, host=host)


def host_device_capability(name: str, capability: str) -> Reason:
    return reason(HOST_DEVICE_CAPABILITY, f"Host device {name} is a {capability} device: PCI devices are "
                  "attached by alias (pci_passthrough:alias), USB devices by id.", device=name, capability=capability)


def host_device_on_other_host(name: str, device_host: str, vm_name: str, vm_host: str) -> Reason:
    return reason(HOST_DEVICE_ON_OTHER_HOST, f"Host device {name} is on host {device_host}, but VM {vm_name} "
                  f"runs (or is pinned) on host {vm_host}.", device=name, device_host=device_host, vm=vm_name,
                  vm_host=vm_host)


def host_devices_pin_vm(vm_name: str, pinned: str, asked: str) -> Reason:
    return reason(HOST_DEVICES_PIN_VM, f"VM {vm_name} holds USB devices of host {pinned}: it can run only there, "
                  f"not on host {asked} (a VM with host devices does not move).", vm=vm_name, pinned=pinned,
                  asked=asked)


def host_device_required_missing(name: str, host: str) -> Reason:
    return reason(HOST_DEVICE_REQUIRED_MISSING, f"Required host device {name} is not plugged into host {host}: "
                  "the VM cannot start without it (plug it back, or make it optional).", device=name, host=host)


# ---- PCI passthrough by alias --------------------------------------------------------------------
PCI_ALIAS_UNKNOWN = "PCI_ALIAS_UNKNOWN"
PCI_REQUEST_INVALID = "PCI_REQUEST_INVALID"
NO_HOST_WITH_PCI_DEVICES = "NO_HOST_WITH_PCI_DEVICES"
PCI_DEVICES_SHORT = "PCI_DEVICES_SHORT"
IOMMU_GROUP_BUSY = "IOMMU_GROUP_BUSY"
NO_FREE_PCIE_PORT = "NO_FREE_PCIE_PORT"
PCI_ATTACHMENT_NOT_FOUND = "PCI_ATTACHMENT_NOT_FOUND"


def pci_alias_unknown(alias: str, known: list[str]) -> Reason:
    return reason(PCI_ALIAS_UNKNOWN, f"PCI alias {alias} is not configured (configured: "
                  f"{', '.join(known) or 'none'}).", alias=alias, known=known)


def pci_request_invalid(text: object, problem: str) -> Reason:
    return reason(PCI_REQUEST_INVALID, f"PCI request {text!r}: {problem}.", request=text, problem=problem)


def no_host_with_pci_devices(cluster_name: str, flavor: str, missing: list[str]) -> Reason:
    """`missing`: each alias request no host can meet, with the most free of it on one host; empty
    when each can be met somewhere but no one host meets them all."""
    what = ", ".join(missing) if missing else "all of its PCI devices on one host"
    asking = f"flavor {flavor}" if flavor else "the request"     # no flavor: an attach to a stopped VM
    return reason(NO_HOST_WITH_PCI_DEVICES, f"No up host of cluster {cluster_name} with the VM's networks has "
                  f"the PCI devices {asking} asks for free: missing {what}.", cluster=cluster_name,
                  flavor=flavor, missing=missing)


def pci_devices_short(host: str, wanted: str, free: int) -> Reason:
    return reason(PCI_DEVICES_SHORT, f"Host {host} has {free} free PCI device(s) for {wanted}, not enough.",
                  host=host, wanted=wanted, free=free)


def iommu_group_busy(name: str, group: int, blockers: list[str]) -> Reason:
    return reason(IOMMU_GROUP_BUSY, f"PCI device {name} shares IOMMU group {group} with {', '.join(blockers)}, "
                  "which another VM holds or the host does not offer: a group goes to one VM whole.",
                  device=name, group=group, blockers=blockers)


def no_free_pcie_port(vm_name: str, free: int, wanted: int) -> Reason:
    return reason(NO_FREE_PCIE_PORT, f"VM {vm_name} has {free} free PCIe root port(s) for hot-plug and "
                  f"{wanted} are needed: give it more (boot.pciePorts) and restart it.", vm=vm_name, free=free,
                  wanted=wanted)


def pci_attachment_not_found(attachment_id: str, vm_name: str) -> Reason:
    return reason(PCI_ATTACHMENT_NOT_FOUND, f"PCI attachment {attachment_id} of VM {vm_name} does not exist.",
                  id=attachment_id, vm=vm_name)
