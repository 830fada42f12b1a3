#!/bin/bash
# PID 1 of the test host (L1), run from the checkout that L1 mounts over 9p at /opt/plugboard/src;
# /opt/plugboard/run is the run directory L0 shares read-write (agent.toml, certificates, logs).
# Starts udev (libvirt lists USB devices only with it), the management NIC, virtlogd, libvirtd and
# the agent, then runs the commands L0 drops in $RUN/cmd (see shell.py). On the serial console:
#   PB-L1: <step> ...            progress, with the seconds since boot
#   PLUGBOARD-L1-READY           libvirtd answers and the agent has been started
#   PB-L1-FAILED: <reason>       a step failed; the machine stays up for the logs to be read
# No systemd: L0 ends the machine through QEMU's monitor.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SRC=/opt/plugboard/src
RUN=/opt/plugboard/run

exec </dev/null >/dev/ttyS0 2>&1
say() { echo "PB-L1: $* ($(cut -d' ' -f1 /proc/uptime) s)"; }
failed() { echo "PB-L1-FAILED: $*"; while :; do sleep 3600; done; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
hostname testhost
echo 1 >/proc/sys/kernel/sysrq
say "mounted"

/lib/systemd/systemd-udevd --daemon || failed "systemd-udevd"
udevadm trigger --action=add
udevadm settle --timeout=60 || say "udevadm settle timed out"
say "udev settled"

# The management NIC (virtio): QEMU's user network, where L0 forwards the agent's port.
nic=""
for d in /sys/class/net/*; do
    [[ $(readlink "$d/device/driver" 2>/dev/null) == */virtio_net ]] && nic=${d##*/}
done
[[ -n "$nic" ]] || failed "no virtio NIC"
ip link set lo up
ip link set "$nic" up
ip addr add 10.0.2.15/24 dev "$nic"
ip route add default via 10.0.2.2
say "network on $nic"

# libvirt offers PCI passthrough only once VFIO is there (/dev/vfio/vfio), as a host's
# modules-load.d would have it.
modprobe vfio-pci || failed "modprobe vfio-pci"

mkdir -p /var/log/libvirt /var/lib/libvirt /run/libvirt /var/log/plugboard "$RUN/vms"
virtlogd -d || failed "virtlogd"
LIBVIRT_LOG_OUTPUTS="3:file:$RUN/libvirtd.log" libvirtd -d || failed "libvirtd"
for _ in $(seq 1 240); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.5
done
virsh -c qemu:///system version >/dev/null 2>&1 || failed "libvirtd does not answer"
say "libvirtd answers"

cd "$SRC" || failed "no checkout at $SRC"
PYTHONPATH=$SRC /opt/plugboard/bin/python -m plugboard.cli agent serve --config "$RUN/agent.toml" \
    >>"$RUN/agent.log" 2>&1 &
echo "$!" >/run/plugboard-agent.pid
say "agent started"
echo PLUGBOARD-L1-READY

# Commands from L0 (tests/testhost/shell.py), each in the background, output then exit status;
# bash as PID 1 also reaps the orphans.
CMD=$RUN/cmd
mkdir -p "$CMD"
shopt -s nullglob
while :; do
    for f in "$CMD"/*.sh; do
        id=${f%.sh}
        mv "$f" "$id.run" || continue
        (bash "$id.run" >"$id.out" 2>&1; echo $? >"$id.rc.tmp"; mv "$id.rc.tmp" "$id.rc") &
    done
    sleep 0.2
done
