#!/usr/bin/env bash
# Starts (or stops) the services the store tests need, on free loopback ports
# with throwaway data dirs, and records where they are in .services/env.
#   bash scripts/services.sh start | stop | status
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are expected to run
# already; they are started with the machine's commands if they do not answer.
# etcd and PgBouncer come from Debian (etcd-server, pgbouncer): installed with
# apt-get when missing and running as root, else a message says how.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export SERVICES_DIR="$ROOT/.services"
export ENV_FILE="$SERVICES_DIR/env"
mkdir -p "$SERVICES_DIR"
cmd="${1:-start}"

# free_port: prints a free TCP port on 127.0.0.1
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
export -f free_port

# set_env KEY VALUE: records a service location for the tests
set_env() {
  touch "$ENV_FILE"
  grep -v "^$1=" "$ENV_FILE" > "$ENV_FILE.tmp" || true
  echo "$1=$2" >> "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}
export -f set_env

# ensure_pkg BINARY DEBIAN_PACKAGE: installs the package when the binary is missing
ensure_pkg() {
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing $2 (apt-get)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null 2>&1
  fi
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then return 0; fi
  echo "services: $1 is missing; install it with: sudo apt-get install -y $2" >&2
  return 1
}
export -f ensure_pkg

rc=0
case "$cmd" in
  start)
    for s in postgres redis pgbouncer etcd; do
      bash "$ROOT/scripts/services/$s.sh" start || rc=1
    done
    ;;
  stop)
    for s in etcd pgbouncer redis postgres; do
      bash "$ROOT/scripts/services/$s.sh" stop || true
    done
    ;;
  status)
    cat "$ENV_FILE" 2>/dev/null
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
exit $rc
