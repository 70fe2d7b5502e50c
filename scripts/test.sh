#!/usr/bin/env bash
# Runs trilog's tests on Debian 12: installs what they need first
# (scripts/setup-debian.sh: protoc, etcd, mkfs.ext4, fio; only what is
# missing), then `cargo test --workspace`. Arguments go to cargo test
# (`scripts/test.sh -- --nocapture`). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-debian.sh

# glommio registers its IO buffers as locked memory; without room for them
# and without CAP_IPC_LOCK (root has it) it falls back to slower
# unregistered buffers, with a warning.
ulimit -l unlimited 2>/dev/null ||
    echo "test: locked memory stays at $(ulimit -l) KiB (enough as root: CAP_IPC_LOCK)"

# A one-off build: incremental caches would only double target/'s size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "test: $(rustc --version); kernel $(uname -r); $(nproc) cpus"
cargo test --workspace "$@"
