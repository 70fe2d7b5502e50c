#!/usr/bin/env bash
# Installs what building and testing trilog needs on Debian 12, if missing:
# a C toolchain, protoc (the etcd baseline's gRPC client is generated at
# build time), Debian's etcd (the etcd baseline and its tests), fio (the
# throughput benchmark's disk baseline) and iproute2 (network namespaces).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=()
command -v cc >/dev/null 2>&1 || packages+=(build-essential)
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
command -v tc >/dev/null 2>&1 || packages+=(iproute2)
command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || packages+=(etcd-server)
command -v fio >/dev/null 2>&1 || packages+=(fio)
if ((${#packages[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q "${packages[@]}"
fi
