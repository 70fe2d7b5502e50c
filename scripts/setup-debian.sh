#!/usr/bin/env bash
# Installs from apt, on Debian 12, what trilog's tests and benchmarks need
# beyond a Rust toolchain, skipping what is there already:
#
# - protoc and the well-known .proto files: etcd's Rust client (the etcd
#   metadata store, the etcd baseline) generates its gRPC code at build
#   time. The quickstart's build does not need them (trilog-bench builds
#   without etcd unless asked); `cargo test --workspace` does.
# - etcd (Debian's etcd-server): the etcd store's tests, trilog on etcd,
#   the etcd baseline.
# - mkfs.ext4: the full-disk tests and the chaos run mount a small ext4
#   image on a loop device (as root).
# - fio: the throughput benchmark's disk baseline (`trilog-bench
#   throughput`).
# - a C compiler: glommio builds liburing from source (a Rust toolchain
#   links with it already, so it is normally there).
#
# Partitions, pauses and delays come from the test kit's own proxies and
# signals: no iproute2 or iptables is needed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

have() { command -v "$1" >/dev/null 2>&1; }
# /usr/sbin is not on every user's PATH.
have_sbin() { have "$1" || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }

packages=()
have cc || packages+=(build-essential)
have protoc || packages+=(protobuf-compiler)
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || packages+=(libprotobuf-dev)
have etcd || packages+=(etcd-server)
have_sbin mkfs.ext4 || packages+=(e2fsprogs)
have fio || packages+=(fio)

if ((${#packages[@]} == 0)); then
    echo "setup-debian: everything is installed"
    exit 0
fi
echo "setup-debian: installing ${packages[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    if ! have sudo; then
        echo "setup-debian: not root and no sudo; install as root: apt-get install ${packages[*]}" >&2
        exit 1
    fi
    sudo_cmd=(sudo env DEBIAN_FRONTEND=noninteractive)
fi
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
