#!/usr/bin/env bash
# Redis is the machine's own (127.0.0.1:6379). Start it if it does not answer.
set -u
case "${1:-start}" in
  start)
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
      if command -v redis-server >/dev/null 2>&1; then
        mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
          --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
      fi
    fi
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
      echo "services: Redis is not answering on 127.0.0.1:6379 (set TENURE_TEST_REDIS_URL, or start redis-server)" >&2
      exit 1
    fi
    ;;
  stop) ;;
esac
