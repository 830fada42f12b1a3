#!/bin/bash
# Prepare this machine (Debian bookworm, root, no systemd) to run Plugboard and its integration
# tests: Debian packages, libvirtd + virtlogd with QEMU (TCG), the pbbr0 bridge, the libvirt
# network "plugboard" on it, and the tiny test guest (scripts/build-guest.sh).
#
# Idempotent and quick when everything is already in place. Prints one line per step; the
# details go to ${PLUGBOARD_SETUP_LOG:-<repo>/var/log/setup-host.log}.
# See notes/host-lab.md for why each step is done this way.
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SCRIPT")")
LOG=${PLUGBOARD_SETUP_LOG:-$REPO/var/log/setup-host.log}
BRIDGE=${PLUGBOARD_BRIDGE:-pbbr0}
LIBVIRT_NETWORK=plugboard

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then
        exec sudo -E bash "$SCRIPT" "$@"
    fi
    echo "setup-host: must run as root" >&2
    exit 1
fi

mkdir -p "$(dirname "$LOG")"
: >"$LOG"
START=$SECONDS

step() { printf 'setup-host: %-38s' "$1"; echo "== $1" >>"$LOG"; }
ok() { echo "${1:-ok}"; }
fail() {
    echo "FAILED: $1"
    echo "---- last lines of $LOG ----" >&2
    tail -n 30 "$LOG" >&2
    exit 1
}
run() { "$@" >>"$LOG" 2>&1; }

PACKAGES=(
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
    libvirt-dev pkg-config gcc python3-dev python3-venv
    dnsmasq-base iptables iproute2 busybox-static postgresql
    make procps gzip ca-certificates
    # the web UI's browser tests (tests/browser): Debian's Chromium, driven by Playwright
    chromium
    # the test host's image (tests/testhost/build-image.sh)
    debootstrap e2fsprogs
)

# 1. Debian packages -------------------------------------------------------------------------
step "packages"
missing=()
for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    ok "all ${#PACKAGES[@]} installed"
else
    export DEBIAN_FRONTEND=noninteractive
    run apt-get -o DPkg::Lock::Timeout=300 update || fail "apt-get update"
    run apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" \
        || fail "apt-get install ${missing[*]}"
    ok "installed ${#missing[@]}: ${missing[*]}"
fi

# 2. Users and groups libvirtd insists on ------------------------------------------------------
step "users and groups"
made=()
getent group kvm >/dev/null || { run groupadd -r kvm && made+=(kvm); }
getent group libvirt-qemu >/dev/null || { run groupadd -r libvirt-qemu && made+=(group:libvirt-qemu); }
if ! getent passwd libvirt-qemu >/dev/null; then
    run useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu \
        || fail "useradd libvirt-qemu"
    made+=(user:libvirt-qemu)
fi
ok "${made[*]:-present}"

# 3. qemu.conf and directories -----------------------------------------------------------------
step "libvirt configuration"
mkdir -p /etc/libvirt /var/log/libvirt /var/lib/libvirt /run/libvirt
QEMU_CONF=$(cat <<'EOF'
# Written by Plugboard's scripts/setup-host.sh: QEMU runs as root with no relabelling
# (containers without systemd, SELinux or AppArmor; see notes/host-lab.md).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
EOF
)
conf_changed=0
if [[ ! -f /etc/libvirt/qemu.conf || "$(cat /etc/libvirt/qemu.conf)" != "$QEMU_CONF" ]]; then
    printf '%s\n' "$QEMU_CONF" >/etc/libvirt/qemu.conf
    conf_changed=1
    ok "qemu.conf written"
else
    ok "unchanged"
fi

# 4. Daemons ---------------------------------------------------------------------------------
step "virtlogd and libvirtd"
started=()
if ! pgrep -x virtlogd >/dev/null; then
    run virtlogd -d || fail "virtlogd -d"
    started+=(virtlogd)
fi
if pgrep -x libvirtd >/dev/null && ((conf_changed)); then
    # A daemon started before this configuration existed would run QEMU with the wrong settings.
    pid=$(cat /run/libvirtd.pid 2>/dev/null || pgrep -xo libvirtd)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    started+=(restarted)
fi
if ! pgrep -x libvirtd >/dev/null; then
    LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" run libvirtd -d || fail "libvirtd -d"
    started+=(libvirtd)
fi
t0=$SECONDS
until virsh -c qemu:///system version >>"$LOG" 2>&1; do
    if ((SECONDS - t0 >= 60)); then
        fail "libvirtd does not answer on qemu:///system after 60 s (see /var/log/libvirt/libvirtd.log)"
    fi
    pgrep -x libvirtd >/dev/null || fail "libvirtd exited (see /var/log/libvirt/libvirtd.log)"
    sleep 0.5
done
ok "${started[*]:+started ${started[*]}, }answering after $((SECONDS - t0)) s"

# 5. Bridge for NIC tests and the demo, and a libvirt network on it ----------------------------
step "bridge $BRIDGE"
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    note="present"
else
    run ip link add "$BRIDGE" type bridge || fail "ip link add $BRIDGE type bridge"
    note="created"
fi
run ip link set "$BRIDGE" up || fail "ip link set $BRIDGE up"
if ! virsh -c qemu:///system net-info "$LIBVIRT_NETWORK" >/dev/null 2>&1; then
    netxml=$(mktemp)
    cat >"$netxml" <<EOF
<network>
  <name>$LIBVIRT_NETWORK</name>
  <forward mode='bridge'/>
  <bridge name='$BRIDGE'/>
</network>
EOF
    run virsh -c qemu:///system net-define "$netxml" || { rm -f "$netxml"; fail "net-define"; }
    rm -f "$netxml"
    run virsh -c qemu:///system net-autostart "$LIBVIRT_NETWORK" || true
fi
if ! [[ $(virsh -c qemu:///system net-info "$LIBVIRT_NETWORK" 2>/dev/null) =~ Active:\ +yes ]]; then
    run virsh -c qemu:///system net-start "$LIBVIRT_NETWORK" || fail "net-start $LIBVIRT_NETWORK"
fi
ok "$note, up; libvirt network '$LIBVIRT_NETWORK' active"

# 6. The web UI's assets (htmx, PatternFly) from the npm registry, as package-lock.json pins them ------
step "web UI assets (npm ci)"
if ! command -v npm >/dev/null; then
    run apt-get -o DPkg::Lock::Timeout=300 update || fail "apt-get update"
    run apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends nodejs npm || fail "apt-get install npm"
fi
lock_sum=$(sha256sum "$REPO/package-lock.json" | cut -d' ' -f1)
if [[ -f $REPO/node_modules/.plugboard-lock && $(cat "$REPO/node_modules/.plugboard-lock") == "$lock_sum" ]]; then
    ok "up to date"
else
    (cd "$REPO" && run npm ci --no-audit --no-fund --ignore-scripts) || fail "npm ci"
    echo "$lock_sum" >"$REPO/node_modules/.plugboard-lock"
    ok "installed"
fi

# 7. Test guest ------------------------------------------------------------------------------
step "test guest"
run bash "$REPO/scripts/build-guest.sh" || fail "scripts/build-guest.sh"
ok "$(tail -n1 "$LOG" | sed 's/^build-guest: //')"

echo "setup-host: done in $((SECONDS - START)) s (log: $LOG)"
