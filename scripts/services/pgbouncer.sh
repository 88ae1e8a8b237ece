#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of 127.0.0.1:5432/test, on a
# free loopback port, for the PostgreSQL store tests.
#   bash scripts/services/pgbouncer.sh start | stop
# Files live in $SERVICES_DIR/pgbouncer (owned by postgres: PgBouncer refuses
# to run as root). Records TENURE_TEST_PGBOUNCER_URL in $ENV_FILE; the URL
# carries ?tenure_pooler=transaction so the store knows it is pooled.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="${ENV_FILE:-$SERVICES_DIR/env}"
DIR="$SERVICES_DIR/pgbouncer"
PIDFILE="$DIR/pgbouncer.pid"
INI="$DIR/pgbouncer.ini"

bin() { command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }; }
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
drop_env() {
  [ -f "$ENV_FILE" ] || return 0
  grep -v '^TENURE_TEST_PGBOUNCER_URL=' "$ENV_FILE" > "$ENV_FILE.tmp" || true
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

case "${1:-start}" in
  start)
    if running && [ -f "$DIR/port" ] && grep -q '^TENURE_TEST_PGBOUNCER_URL=' "$ENV_FILE" 2>/dev/null; then
      exit 0 # already running from this dir: reuse
    fi
    if [ -z "$(bin)" ]; then
      if declare -F ensure_pkg >/dev/null; then ensure_pkg pgbouncer pgbouncer || exit 1
      else echo "services: pgbouncer is missing; install it with: sudo apt-get install -y pgbouncer" >&2; exit 1; fi
    fi
    PGB="$(bin)"
    running && kill "$(cat "$PIDFILE")" 2>/dev/null
    mkdir -p "$DIR"
    if declare -F free_port >/dev/null; then PORT="$(free_port)"
    else PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"; fi
    echo '"postgres" ""' > "$DIR/userlist.txt"
    cat > "$INI" <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $DIR/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
logfile = $DIR/pgbouncer.log
pidfile = $PIDFILE
admin_users = postgres
INI
    echo "$PORT" > "$DIR/port"
    rm -f "$PIDFILE"
    if [ "$(id -u)" = "0" ]; then
      chown -R postgres: "$DIR"
      "$PGB" -d -u postgres "$INI" >/dev/null 2>&1
    else
      "$PGB" -d "$INI" >/dev/null 2>&1
    fi
    for _ in $(seq 1 50); do
      pg_isready -q -h 127.0.0.1 -p "$PORT" -U postgres -d test 2>/dev/null && running && break
      sleep 0.1
    done
    if ! running; then
      echo "services: pgbouncer did not start (see $DIR/pgbouncer.log)" >&2
      exit 1
    fi
    if declare -F set_env >/dev/null; then
      set_env TENURE_TEST_PGBOUNCER_URL "postgres://postgres@127.0.0.1:$PORT/test?tenure_pooler=transaction"
    else
      drop_env
      echo "TENURE_TEST_PGBOUNCER_URL=postgres://postgres@127.0.0.1:$PORT/test?tenure_pooler=transaction" >> "$ENV_FILE"
    fi
    ;;
  stop)
    if running; then
      pid="$(cat "$PIDFILE")"
      kill "$pid" 2>/dev/null
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE" "$DIR/port"
    drop_env
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
