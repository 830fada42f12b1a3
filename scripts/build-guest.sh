#!/bin/bash
# Build the tiny test guest: a Debian kernel and a busybox initramfs whose /init reports, on the
# serial console, which NICs, USB host controllers and USB devices the guest sees. Integration tests
# and the demo boot it with direct kernel boot (see notes/host-lab.md) and read the serial log to
# watch hot-plug happen.
#
# Output: ${PLUGBOARD_GUEST_DIR:-<repo>/var/guest}/{vmlinuz,initrd.gz,build-id}
# Idempotent: does nothing when both files exist and build-id holds the sha256 of this script (which
# contains the guest's /init), so any change to the script rebuilds the guest, whatever the files'
# times (a fresh clone, a restored cache). PLUGBOARD_GUEST_REBUILD=1 forces a rebuild.
#
# Serial protocol of the guest (one line each, on ttyS0):
#   PLUGBOARD-GUEST-READY                      once, after the modules are loaded
#   PB-NETS: eth0=52:54:00:aa:bb:cc eth1=...   at start and whenever the set of interfaces changes
#   PB-USBHC: 0000:00:01.2=uhci:8086:7020 ...  the USB host controllers on the guest's PCI buses
#                                              (PCI class 0x0c03; prog-if 00 uhci, 10 ohci, 20 ehci,
#                                              30 xhci; read from sysfs, no driver needed), as
#                                              address=kind:vendor:device: at start, after every
#                                              PB-NETS line and whenever the set changes
#   PB-USB: 1-1=0627:0001 ...                  at start and whenever the set of USB devices changes
# Needs: apt-get (Debian mirror), dpkg-deb, busybox-static, gzip. Run as root (mknod).
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SCRIPT")")
GUEST_DIR=${PLUGBOARD_GUEST_DIR:-$REPO/var/guest}
BUSYBOX=${PLUGBOARD_BUSYBOX:-/bin/busybox}

log() { echo "build-guest: $*"; }

BUILD_ID=$(sha256sum "$SCRIPT" | cut -d' ' -f1)
if [[ -z "${PLUGBOARD_GUEST_REBUILD:-}" && -s "$GUEST_DIR/vmlinuz" && -s "$GUEST_DIR/initrd.gz" \
      && "$(cat "$GUEST_DIR/build-id" 2>/dev/null)" == "$BUILD_ID" ]]; then
    log "up to date in $GUEST_DIR"
    exit 0
fi

if ! [[ -x "$BUSYBOX" && $("$BUSYBOX" --list 2>/dev/null) == *cpio* ]]; then
    echo "build-guest: $BUSYBOX (busybox-static) is missing; run scripts/setup-host.sh" >&2
    exit 1
fi

# The kernel package that the linux-image-amd64 metapackage points at (not the -cloud flavour,
# which has no USB support).
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
PKG=$(kernel_pkg)
if [[ -z "$PKG" ]]; then
    log "package lists missing, running apt-get update"
    apt-get update -qq
    PKG=$(kernel_pkg)
fi
[[ -n "$PKG" ]] || { echo "build-guest: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }

mkdir -p "$GUEST_DIR"
WORK=$(mktemp -d "$GUEST_DIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log "downloading $PKG"
(cd "$WORK" && apt-get -qq -o APT::Sandbox::User=root download "$PKG")
dpkg-deb -x "$WORK"/"$PKG"_*.deb "$WORK/pkg"
rm -f "$WORK"/"$PKG"_*.deb

KVER=${PKG#linux-image-}
MODDIR="$WORK/pkg/lib/modules/$KVER/kernel"
[[ -d "$MODDIR" ]] || { echo "build-guest: no modules for $KVER in $PKG" >&2; exit 1; }

# Load order matters (no modprobe/depmod in the guest): dependencies first.
MODULES=(
    # virtio NIC (order from notes/host-lab.md)
    virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
    failover net_failover virtio_net
    # the other NIC models the engine offers (rtl8139, e1000, e1000e)
    mii 8139too 8139cp e1000 e1000e
    # USB host controllers (pc: piix3-uhci, q35: qemu-xhci, ehci) and USB HID (tablet)
    usb-common usbcore ehci-hcd ehci-pci uhci-hcd xhci-hcd xhci-pci hid usbhid hid-generic
)

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in sh mount insmod ip sleep cat echo ls mkdir poweroff; do
    ln -s busybox "$ROOT/bin/$applet"
done
for m in "${MODULES[@]}"; do
    f=$(find "$MODDIR" -name "$m.ko" -print -quit)
    [[ -n "$f" ]] || { echo "build-guest: module $m.ko not found in $PKG" >&2; exit 1; }
    cp "$f" "$ROOT/modules/"
done
# The kernel opens /dev/console before /init runs; without it /init has no stdout.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || log "warning: cannot mknod dev/console (not root?)"

cat > "$ROOT/init" <<EOF
#!/bin/sh
# Plugboard test guest: report hot-plugged NICs, USB host controllers and USB devices on the
# serial console.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/ttyS0 ] && exec >/dev/ttyS0 2>&1
# Keep kernel messages off the console so our lines stay whole.
echo "1 4 1 7" > /proc/sys/kernel/printk
for m in ${MODULES[*]}; do
    insmod /modules/\$m.ko 2>/dev/null
done
EOF
cat >> "$ROOT/init" <<'EOF'
nets() {
    line=""
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        [ -e "$d/address" ] || continue
        read mac < "$d/address"
        line="$line $n=$mac"
    done
    echo "$line"
}
# USB host controllers by PCI class code (0x0c03, prog-if in the last byte): no driver needed.
usbhcs() {
    line=""
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d/class" ] || continue
        read c < "$d/class"
        case "$c" in
            0x0c0300) k=uhci ;;
            0x0c0310) k=ohci ;;
            0x0c0320) k=ehci ;;
            0x0c0330) k=xhci ;;
            0x0c03??) k=usb${c#0x0c03} ;;
            *) continue ;;
        esac
        read v < "$d/vendor"; read p < "$d/device"
        line="$line ${d##*/}=$k:${v#0x}:${p#0x}"
    done
    echo "$line"
}
usbs() {
    line=""
    for d in /sys/bus/usb/devices/*; do
        [ -e "$d/idVendor" ] || continue
        n=${d##*/}
        case "$n" in usb*) continue ;; esac
        read v < "$d/idVendor"; read p < "$d/idProduct"
        line="$line $n=$v:$p"
    done
    echo "$line"
}
ip link set lo up
for d in /sys/class/net/*; do ip link set "${d##*/}" up 2>/dev/null; done
echo PLUGBOARD-GUEST-READY
last_nets=x; last_usb=x; last_hcs=x
while :; do
    cur=$(nets)
    hcs=$(usbhcs)
    if [ "$cur" != "$last_nets" ]; then
        for n in $cur; do ip link set "${n%%=*}" up 2>/dev/null; done
        echo "PB-NETS:$cur"
        last_nets=$cur
        last_hcs=x
    fi
    if [ "$hcs" != "$last_hcs" ]; then
        echo "PB-USBHC:$hcs"
        last_hcs=$hcs
    fi
    cur=$(usbs)
    if [ "$cur" != "$last_usb" ]; then
        echo "PB-USB:$cur"
        last_usb=$cur
    fi
    usleep 300000
done
EOF
chmod 755 "$ROOT/init"

cp "$WORK/pkg/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
(cd "$ROOT" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.gz")
echo "$PKG" > "$WORK/kernel-package"
mv -f "$WORK/vmlinuz" "$GUEST_DIR/vmlinuz"
mv -f "$WORK/initrd.gz" "$GUEST_DIR/initrd.gz"
mv -f "$WORK/kernel-package" "$GUEST_DIR/kernel-package"
echo "$BUILD_ID" > "$GUEST_DIR/build-id"
log "built $GUEST_DIR (kernel $KVER, initrd $(du -k "$GUEST_DIR/initrd.gz" | cut -f1) KiB)"
