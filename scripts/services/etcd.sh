#!/usr/bin/env bash
# etcd for the store tests: one single-member server and one 3-member cluster,
# all on free loopback ports with throwaway data dirs under $SERVICES_DIR/etcd.
#   bash scripts/services/etcd.sh start | stop
# Records in $ENV_FILE:
#   TENURE_TEST_ETCD_URL          etcd://127.0.0.1:PORT           (single member)
#   TENURE_TEST_ETCD_CLUSTER_URL  etcd://127.0.0.1:P1,…:P2,…:P3    (3 members)
#   TENURE_TEST_ETCD_DIR          where each member keeps <member>.pid,
#                                 <member>.port (client port), <member>.log and
#                                 <member>.sh (starts that member again in the
#                                 background, same ports and data dir).
# Members: single, c1, c2, c3. Logs go to files (level warn), never to the
# terminal. Idempotent: start reuses running members, stop kills only what
# the pidfiles name and removes the data dirs and env lines.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="${ENV_FILE:-$SERVICES_DIR/env}"
DIR="$SERVICES_DIR/etcd"
MEMBERS="single c1 c2 c3"

port() {
  if declare -F free_port >/dev/null; then free_port
  else node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; fi
}
record() {
  if declare -F set_env >/dev/null; then set_env "$1" "$2"; return; fi
  touch "$ENV_FILE"
  grep -v "^$1=" "$ENV_FILE" > "$ENV_FILE.tmp" || true
  echo "$1=$2" >> "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}
drop_env() {
  [ -f "$ENV_FILE" ] || return 0
  grep -v -E '^TENURE_TEST_ETCD_(URL|CLUSTER_URL|DIR)=' "$ENV_FILE" > "$ENV_FILE.tmp" || true
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}
running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
# healthy PORT: the member answers /health with "health":"true" (a cluster
# member only once it has a leader)
healthy() {
  node -e '
    const req = require("http").get({ host: "127.0.0.1", port: +process.argv[1], path: "/health", timeout: 1000 }, (r) => {
      let b = ""; r.on("data", (d) => (b += d)); r.on("end", () => process.exit(/"health":\s*"true"/.test(b) ? 0 : 1));
    });
    req.on("error", () => process.exit(1)); req.on("timeout", () => { req.destroy(); process.exit(1); });
  ' "$1" 2>/dev/null
}

# write_member NAME CLIENT_PORT PEER_PORT INITIAL_CLUSTER CLUSTER_TOKEN: writes NAME.sh
write_member() {
  local name="$1" cport="$2" pport="$3" cluster="$4" token="$5"
  echo "$cport" > "$DIR/$name.port"
  cat > "$DIR/$name.sh" <<SH
#!/usr/bin/env bash
# Starts etcd member $name in the background (same ports, same data dir).
cd "$DIR" || exit 1
setsid etcd --name $name --data-dir "$DIR/$name.data" \\
  --listen-client-urls http://127.0.0.1:$cport --advertise-client-urls http://127.0.0.1:$cport \\
  --listen-peer-urls http://127.0.0.1:$pport --initial-advertise-peer-urls http://127.0.0.1:$pport \\
  --initial-cluster $cluster --initial-cluster-state new --initial-cluster-token $token \\
  --heartbeat-interval 50 --election-timeout 500 \\
  --logger zap --log-level warn --log-outputs "$DIR/$name.log" \\
  </dev/null >>"$DIR/$name.out" 2>&1 &
echo \$! > "$DIR/$name.pid"
SH
}

stop_member() {
  if running "$1"; then
    local pid
    pid="$(cat "$DIR/$1.pid")"
    kill -CONT "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$DIR/$1.pid"
}

case "${1:-start}" in
  start)
    all=1
    for m in $MEMBERS; do running "$m" && healthy "$(cat "$DIR/$m.port" 2>/dev/null)" || all=0; done
    if [ "$all" = 1 ] && grep -q '^TENURE_TEST_ETCD_CLUSTER_URL=' "$ENV_FILE" 2>/dev/null; then
      exit 0 # already running from this dir: reuse
    fi
    if ! command -v etcd >/dev/null 2>&1; then
      if declare -F ensure_pkg >/dev/null; then ensure_pkg etcd etcd-server || exit 1
      else echo "services: etcd is missing; install it with: sudo apt-get install -y etcd-server" >&2; exit 1; fi
    fi
    for m in $MEMBERS; do stop_member "$m"; done
    rm -rf "$DIR"
    mkdir -p "$DIR"
    sc="$(port)"; sp="$(port)"
    write_member single "$sc" "$sp" "single=http://127.0.0.1:$sp" "tenure-single-$$"
    c1c="$(port)"; c1p="$(port)"; c2c="$(port)"; c2p="$(port)"; c3c="$(port)"; c3p="$(port)"
    cluster="c1=http://127.0.0.1:$c1p,c2=http://127.0.0.1:$c2p,c3=http://127.0.0.1:$c3p"
    write_member c1 "$c1c" "$c1p" "$cluster" "tenure-cluster-$$"
    write_member c2 "$c2c" "$c2p" "$cluster" "tenure-cluster-$$"
    write_member c3 "$c3c" "$c3p" "$cluster" "tenure-cluster-$$"
    for m in $MEMBERS; do bash "$DIR/$m.sh"; done
    ok=1
    deadline=$((SECONDS + 20))
    for m in $MEMBERS; do
      p="$(cat "$DIR/$m.port")"
      while [ "$SECONDS" -lt "$deadline" ] && running "$m" && ! healthy "$p"; do sleep 0.1; done
      if ! healthy "$p"; then
        echo "services: etcd member $m did not become healthy on 127.0.0.1:$p (see $DIR/$m.log)" >&2
        ok=0
      fi
    done
    if [ "$ok" = 0 ]; then
      for m in $MEMBERS; do stop_member "$m"; done
      drop_env
      exit 1
    fi
    record TENURE_TEST_ETCD_URL "etcd://127.0.0.1:$sc"
    record TENURE_TEST_ETCD_CLUSTER_URL "etcd://127.0.0.1:$c1c,127.0.0.1:$c2c,127.0.0.1:$c3c"
    record TENURE_TEST_ETCD_DIR "$DIR"
    ;;
  stop)
    for m in $MEMBERS; do stop_member "$m"; done
    rm -rf "$DIR"
    drop_env
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
exit 0
