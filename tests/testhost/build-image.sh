#!/bin/bash
# Build the test host (L1): a Debian bookworm root filesystem made with debootstrap, holding
# Debian's libvirt, QEMU and udev and the agent's Debian python3 packages, plus the agent's two
# pure-Python packages in /opt/plugboard (the README's way of installing the agent on a host). The
# agent itself is not in the image: L1 mounts this checkout over 9p and runs it from there.
#
# Output in ${PLUGBOARD_TESTHOST_DIR:-<repo>/var/testhost/image}:
#   l1.img          ext4 root filesystem (raw, sparse); booted with -snapshot, so it never changes
#   vmlinuz         L1's kernel (Debian's linux-image-amd64)
#   initrd.gz       busybox initramfs: loads virtio, ext4 and 9p, mounts the root and the checkout,
#                   then runs tests/testhost/l1-init.sh from the checkout as PID 1
#   build-id        sha256 of this script, the mirror, the kernel package and the pip pins
# In the image, /var/lib/plugboard/images/{vmlinux,l2-initrd.gz}: the tiny L2 guest (same kernel;
# its /init uses shell builtins only, see notes on nested TCG).
#
# Rebuilt only when build-id changes (PLUGBOARD_TESTHOST_REBUILD=1 forces it). Downloaded .debs are
# kept in var/testhost/debs for the next build. Needs root, debootstrap, busybox-static, e2fsprogs.
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$(dirname "$SCRIPT")")")
OUT=${PLUGBOARD_TESTHOST_DIR:-$REPO/var/testhost/image}
DEBS=$REPO/var/testhost/debs
BUSYBOX=${PLUGBOARD_BUSYBOX:-/bin/busybox}
SUITE=bookworm
PYTHON=${PLUGBOARD_PYTHON:-$REPO/.venv/bin/python}
IMAGE_SIZE=3G

log() { echo "build-testhost: $*"; }
die() { echo "build-testhost: $*" >&2; exit 1; }

PACKAGES=(
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
    python3 python3-venv python3-libvirt python3-lxml python3-yaml python3-jsonschema
    python3-typing-extensions
    udev kmod usbutils pciutils iproute2 procps busybox
)
# The agent's pure-Python dependencies (README: pip install --no-deps jsonrpcserver oslash), at the
# versions the project's own venv has.
PIP_PACKAGES=(jsonrpcserver oslash)

# The Debian mirror this machine's apt uses (deb822 or one-line sources), not the security suite.
mirror() {
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n 's/^URIs: *\(http[^ ]*debian\/\?\)$/\1/p' | head -n1)
    [[ -n "$m" ]] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -n 's/^deb  *\(\[[^]]*\]  *\)\?\(http[^ ]*debian\/\?\)  *bookworm .*/\2/p' | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}

pins() {
    "$PYTHON" - "${PIP_PACKAGES[@]}" <<'EOF'
import importlib.metadata, sys
print(" ".join(f"{p}=={importlib.metadata.version(p)}" for p in sys.argv[1:]))
EOF
}

MIRROR=$(mirror)
KPKG=$(kernel_pkg)
if [[ -z "$KPKG" ]]; then
    apt-get update -qq
    KPKG=$(kernel_pkg)
fi
[[ -n "$KPKG" ]] || die "cannot resolve linux-image-amd64's kernel package"
PINS=$(pins) || die "cannot read the pip pins from $PYTHON (run make setup)"

BUILD_ID=$( (cat "$SCRIPT"; echo "$MIRROR $KPKG $PINS") | sha256sum | cut -d' ' -f1)
if [[ -z "${PLUGBOARD_TESTHOST_REBUILD:-}" && -s "$OUT/l1.img" && -s "$OUT/vmlinuz" && -s "$OUT/initrd.gz" \
      && "$(cat "$OUT/build-id" 2>/dev/null)" == "$BUILD_ID" ]]; then
    log "up to date in $OUT"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v debootstrap >/dev/null || die "debootstrap is missing; run scripts/setup-host.sh"
[[ -x "$BUSYBOX" && $("$BUSYBOX" --list 2>/dev/null) == *cpio* ]] || die "$BUSYBOX (busybox-static) is missing"

START=$SECONDS
mkdir -p "$OUT" "$DEBS"
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/rootfs

# 1. Root filesystem and packages in one debootstrap run (it resolves the included packages' deps).
log "debootstrap $SUITE from $MIRROR"
include=$(IFS=,; echo "${PACKAGES[*]}")
dbs_failed() { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
# Two stages, so that dpkg runs without an fsync per file in between (the image is made from the
# tree afterwards; a crash mid-build just means building again).
debootstrap --foreign --variant=minbase --include="$include" --cache-dir="$DEBS" "$SUITE" "$ROOT" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || dbs_failed
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/unsafe-io"
chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.log" 2>&1 || dbs_failed
rm -f "$ROOT/etc/dpkg/dpkg.cfg.d/unsafe-io"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
log "rootfs after $((SECONDS - START)) s"

# 2. Kernel: unpacked, not installed (no initramfs-tools). --keep-directory-symlink keeps the
# /lib -> usr/lib symlink of the merged-/usr root (dpkg-deb -x would replace it with a directory).
KVER=${KPKG#linux-image-}
(cd "$WORK" && apt-get -qq -o APT::Sandbox::User=root download "$KPKG")
dpkg-deb --fsys-tarfile "$WORK/${KPKG}"_*.deb | tar -x --keep-directory-symlink -C "$ROOT"
rm -f "$WORK/${KPKG}"_*.deb
chroot "$ROOT" depmod "$KVER"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# 3. What libvirtd insists on (users, groups, directories) and QEMU as root without relabelling.
for group in kvm libvirt-qemu; do
    chroot "$ROOT" getent group "$group" >/dev/null || chroot "$ROOT" groupadd -r "$group"
done
chroot "$ROOT" getent passwd libvirt-qemu >/dev/null \
    || chroot "$ROOT" useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p "$ROOT"/etc/libvirt "$ROOT"/var/log/libvirt "$ROOT"/var/lib/libvirt "$ROOT"/run/libvirt
cat >"$ROOT/etc/libvirt/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
EOF
echo testhost >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 testhost\n' >"$ROOT/etc/hosts"
mkdir -p "$ROOT"/opt/plugboard/src "$ROOT"/opt/plugboard/run "$ROOT"/var/lib/plugboard/images

# 4. The agent's environment, as the README installs it on a host.
chroot "$ROOT" python3 -m venv --system-site-packages --without-pip /opt/plugboard
SITE=$(echo "$ROOT"/opt/plugboard/lib/python3*/site-packages)
# shellcheck disable=SC2086
"$PYTHON" -m pip install -q --no-deps --no-compile --target "$SITE" $PINS >"$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log" >&2; die "pip install $PINS failed"; }

# Modules with their dependencies, in load order, from the image's modules.dep.
MODDIR=$ROOT/lib/modules/$KVER
closure() {
    python3 - "$MODDIR/modules.dep" "$@" <<'EOF'
import sys
deps = {}
for line in open(sys.argv[1]):
    path, _, rest = line.partition(":")
    deps[path.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_")] = (path, rest.split())
order, seen = [], set()
def visit(name):
    name = name.replace("-", "_")
    if name in seen:
        return
    seen.add(name)
    if name not in deps:
        sys.exit(f"module {name} not found")
    path, needs = deps[name]
    for dep in needs:
        visit(dep.rsplit("/", 1)[-1].removesuffix(".ko"))
    order.append(path)
for m in sys.argv[2:]:
    visit(m)
print("\n".join(order))
EOF
}

# initramfs: $1 output, $2 /init text, $3... modules
make_initrd() {
    local out=$1 init=$2; shift 2
    local dir=$WORK/initrd.$RANDOM
    mkdir -p "$dir"/{bin,dev,proc,sys,newroot,modules}
    cp "$BUSYBOX" "$dir/bin/busybox"
    for applet in sh mount insmod sleep echo mkdir switch_root cat ls; do ln -s busybox "$dir/bin/$applet"; done
    local paths
    paths=$(closure "$@") || die "module closure failed"
    : >"$dir/modules/order"
    while read -r p; do
        cp "$MODDIR/$p" "$dir/modules/"
        echo "${p##*/}" >>"$dir/modules/order"
    done <<<"$paths"
    mknod -m 600 "$dir/dev/console" c 5 1
    printf '%s\n' "$init" >"$dir/init"
    chmod 755 "$dir/init"
    (cd "$dir" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$out")
}

# 5. L1's initramfs: root on virtio-blk, the checkout (ro) and the run directory (rw) over 9p.
L1_INIT=$(cat <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read m; do insmod /modules/$m 2>/dev/null; done </modules/order
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "PB-L1-FAILED: cannot mount /dev/vda"; sleep 5; exit 1; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 src /newroot/opt/plugboard/src \
    || { echo "PB-L1-FAILED: cannot mount the checkout"; sleep 5; exit 1; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 run /newroot/opt/plugboard/run \
    || { echo "PB-L1-FAILED: cannot mount the run directory"; sleep 5; exit 1; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash /opt/plugboard/src/tests/testhost/l1-init.sh
EOF
)
# crc32c_generic: ext4 needs a crc32c driver, a soft dependency modules.dep does not list.
make_initrd "$WORK/initrd.gz" "$L1_INIT" virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p

# 6. The L2 guest: same kernel; /init loads the e1000e driver, says it is ready, and leaves the
# console to the kernel (log level 7), which reports each PCI device hot-added or removed. No loop,
# no forks: fork-heavy shells crawl in a guest nested in TCG.
L2_INIT=$(cat <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/ttyS0 ] && exec >/dev/ttyS0 2>&1
while read m; do insmod /modules/$m 2>/dev/null; done </modules/order
echo 7 >/proc/sys/kernel/printk
echo PLUGBOARD-L2-READY
exec sleep 2147483647
EOF
)
# The kernel uncompressed, booted through its PVH entry: decompressing bzImage in a guest nested
# in TCG takes minutes.
python3 - "$ROOT/boot/vmlinuz-$KVER" "$ROOT/var/lib/plugboard/images/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no xz payload in the kernel image")
elf = lzma.LZMADecompressor().decompress(data[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("the kernel's payload is not an ELF image")
open(sys.argv[2], "wb").write(elf)
PY
make_initrd "$ROOT/var/lib/plugboard/images/l2-initrd.gz" "$L2_INIT" e1000e

# 7. The image. Sparse; L1 boots it with -snapshot, so this file is never written again.
rm -rf "$ROOT/boot"/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
truncate -s "$IMAGE_SIZE" "$WORK/l1.img"
mkfs.ext4 -F -q -L testhost -d "$ROOT" "$WORK/l1.img"
mv -f "$WORK/l1.img" "$OUT/l1.img"
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initrd.gz" "$OUT/initrd.gz"
echo "$KPKG" >"$OUT/kernel-package"
echo "$BUILD_ID" >"$OUT/build-id"
log "built $OUT in $((SECONDS - START)) s (kernel $KVER, $(du -m "$OUT/l1.img" | cut -f1) MB allocated)"
