# shellcheck shell=bash
# Shared by scripts/setup.sh and scripts/test.sh: root or sudo, and installing the Debian packages
# named in PACKAGES that are missing. The caller defines say() and die().
#
# Installing Prosody, nginx or HAProxy must not start their system services with stock settings
# (the suites run their own instances on free loopback ports; setup.sh starts Prosody itself once its
# configuration is right): a policy-rc.d answering 101 forbids the start. It is put in place, and
# removed again, only when the machine has none.

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
    SUDO=(sudo)
fi

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || printf '%s\n' "$p"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all Debian packages present"
        return
    fi
    say "installing: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d placed=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        placed=1
    fi
    # A fresh machine may be running its own apt (unattended-upgrades): wait for its lock.
    local apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    "${apt[@]}" update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
        "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    fi
    [ "$placed" -eq 1 ] && "${SUDO[@]}" rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
}
