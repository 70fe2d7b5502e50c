#!/usr/bin/env bash
# Installs trilog on this host: the binaries, a system user, the config and
# data directories, and the systemd unit of the node.
#
#   deploy/install.sh [--bin-dir DIR] [--root DIR] [--no-systemctl]
#
# --bin-dir  where trilog-node and trilog are (default: target/dist, from
#            `cargo build --profile dist`)
# --root     install under DIR instead of / (a staging tree or a test);
#            implies --no-systemctl and creates no user
# --no-systemctl  do not run `systemctl daemon-reload`
#
# It never overwrites /etc/trilog/node.toml: the first install copies the
# example there, to edit (node_id, host, meta, zone, tls_*).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin_dir="$here/../target/dist"
root=""
systemctl=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --root) root="$2"; systemctl=no; shift 2 ;;
        --no-systemctl) systemctl=no; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ ! -x "$bin_dir/trilog-node" ]; then
    echo "install.sh: $bin_dir/trilog-node not found: run \`cargo build --profile dist\` first, or give --bin-dir" >&2
    exit 1
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/trilog"
install -d -m 0750 "$root/etc/trilog/tls" "$root/var/lib/trilog"
install -m 0755 "$bin_dir/trilog-node" "$root/usr/local/bin/"
# The CLI is optional on a node's host (operators may run it elsewhere).
if [ -x "$bin_dir/trilog" ]; then
    install -m 0755 "$bin_dir/trilog" "$root/usr/local/bin/"
else
    echo "install.sh: no $bin_dir/trilog: the CLI is not installed"
fi
install -m 0644 "$here/systemd/trilog-node.service" "$root/etc/systemd/system/"
if [ ! -e "$root/etc/trilog/node.toml" ]; then
    install -m 0640 "$here/examples/node.toml" "$root/etc/trilog/node.toml"
fi

if [ -z "$root" ]; then
    if ! id trilog >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/trilog --shell /usr/sbin/nologin trilog
    fi
    chown trilog:trilog /var/lib/trilog
    chown root:trilog /etc/trilog/node.toml /etc/trilog/tls
fi
if [ "$systemctl" = yes ]; then
    systemctl daemon-reload
fi

cat <<NEXT
trilog installed under ${root:-/}.
Next: edit ${root}/etc/trilog/node.toml (node_id, host, meta, zone), put the
node's certificate and key in ${root}/etc/trilog/tls/ (key readable by the
trilog group only), check the settings with
    trilog-node --config /etc/trilog/node.toml --print-config
then start it:
    systemctl enable --now trilog-node
NEXT
