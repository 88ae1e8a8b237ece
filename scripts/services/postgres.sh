#!/usr/bin/env bash
# PostgreSQL is the machine's own (127.0.0.1:5432, trust). Start it if it does not answer.
set -u
case "${1:-start}" in
  start)
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
      if command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
      fi
      for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
      echo "services: PostgreSQL is not answering on 127.0.0.1:5432 (set TENURE_TEST_PG_URL, or start it: pg_ctlcluster <version> main start)" >&2
      exit 1
    fi
    psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'" postgres 2>/dev/null | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -c "create database test" postgres >/dev/null 2>&1 || true
    ;;
  stop) ;; # not ours to stop
esac
