#!/usr/bin/env bash
# A one-machine Ray cluster bound to 127.0.0.1, for `ray job submit` against this machine.
#
#   cluster/start-local-cluster.sh start     # head node in the background; prints RAY_ADDRESS
#   cluster/start-local-cluster.sh status
#   cluster/start-local-cluster.sh stop      # stops exactly this head (by its pid)
#
# Then:  RAY_ADDRESS=http://127.0.0.1:8265 ray job submit --working-dir . -- \
#            python -m jobs.train --preset debug
#
# `stop` signals the `ray start --block` process this script started (it shuts down its own
# raylet, GCS and dashboard), never `ray stop`, which kills every Ray process of every user
# session on the machine by name.
#
# Settings (environment):
#   RAY_BIN              ray executable (default: .venv/bin/ray of this repo, else `ray` on PATH)
#   VARED2_RAY_DIR       state folder: pid file, log, Ray temp dir (default /tmp/vared2-ray).
#                        Keep it short: Ray's Unix sockets live below it (108-byte path limit).
#   RAY_PORT             GCS port (6379)          RAY_DASHBOARD_PORT   dashboard / Jobs API (8265)
#   RAY_CLIENT_PORT      Ray Client (10001)       RAY_AGENT_PORT       dashboard agent (52365)
#   RAY_RUNTIME_ENV_PORT runtime-env agent (random when unset)
#   RAY_METRICS_PORT     metrics export (random when unset)
#   RAY_NUM_CPUS         CPUs offered (default: all)   RAY_NUM_GPUS   GPUs offered (default: detected)
#   RAY_START_TIMEOUT    seconds to wait for the head to come up (120)
#   RAY_AUTH_MODE        token (default) | disabled. With token, the head and every client use
#                        $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token
#                        (generated here when none exists); clients need RAY_AUTH_MODE=token too.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [[ -z "${RAY_BIN:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/ray" ]]; then RAY_BIN="$REPO/.venv/bin/ray"; else RAY_BIN="ray"; fi
fi
STATE="${VARED2_RAY_DIR:-/tmp/vared2-ray}"
PIDFILE="$STATE/head.pid"
LOG="$STATE/head.log"
PORT="${RAY_PORT:-6379}"
DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
CLIENT_PORT="${RAY_CLIENT_PORT:-10001}"
AGENT_PORT="${RAY_AGENT_PORT:-52365}"
TIMEOUT="${RAY_START_TIMEOUT:-120}"

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_open() {  # bash's /dev/tcp: no curl or python needed on the node
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  if running; then
    echo "a head started by this script is already running (pid $(cat "$PIDFILE"))" >&2
    return 1
  fi
  mkdir -p "$STATE/tmp"
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
  if [[ "$RAY_AUTH_MODE" == token && -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" \
        && ! -s "$HOME/.ray/auth_token" ]]; then
    "$RAY_BIN" get-auth-token --generate >/dev/null
  fi
  local args=(start --head --block --disable-usage-stats
    --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1
    --port="$PORT" --dashboard-port="$DASHBOARD_PORT" --ray-client-server-port="$CLIENT_PORT"
    --dashboard-agent-listen-port="$AGENT_PORT" --temp-dir="$STATE/tmp")
  # Job entrypoints say `python`: make it the interpreter that has this ray (and the project).
  if [[ "$RAY_BIN" == */* ]]; then export PATH="$(cd "$(dirname "$RAY_BIN")" && pwd):$PATH"; fi
  [[ -n "${RAY_RUNTIME_ENV_PORT:-}" ]] && args+=(--runtime-env-agent-port="$RAY_RUNTIME_ENV_PORT")
  [[ -n "${RAY_METRICS_PORT:-}" ]] && args+=(--metrics-export-port="$RAY_METRICS_PORT")
  [[ -n "${RAY_NUM_CPUS:-}" ]] && args+=(--num-cpus="$RAY_NUM_CPUS")
  [[ -n "${RAY_NUM_GPUS:-}" ]] && args+=(--num-gpus="$RAY_NUM_GPUS")
  # --node-ip-address=127.0.0.1 alone is not enough: `ray start` swaps a loopback address for the
  # routable one and GCS listens on every interface. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's
  # single-machine mode (every component, and the drivers of submitted jobs, on 127.0.0.1).
  # setsid: the head gets its own process group, so `stop` can clean up exactly that group.
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 setsid "$RAY_BIN" "${args[@]}" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local waited=0
  until grep -q "Ray runtime started" "$LOG" 2>/dev/null && port_open "$DASHBOARD_PORT"; do
    if ! running; then
      echo "ray start failed; its log ($LOG):" >&2
      tail -n 40 "$LOG" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    if ((waited >= TIMEOUT)); then
      echo "the head did not come up within ${TIMEOUT}s; see $LOG" >&2
      stop
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "Ray head on 127.0.0.1:$PORT (pid $(cat "$PIDFILE")), dashboard http://127.0.0.1:$DASHBOARD_PORT"
  echo "export RAY_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT RAY_AUTH_MODE=$RAY_AUTH_MODE"
}

is_our_head() {  # guards against a stale pid file whose pid now belongs to something else
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "ray start --head --block"
}

stop() {
  if ! [[ -f "$PIDFILE" ]]; then
    echo "no head started by this script (no $PIDFILE)"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null && is_our_head "$pid"; then
    kill -TERM "$pid"  # `ray start --block` shuts its node's processes down on SIGTERM
    for _ in $(seq 1 45); do  # Ray drains for up to 30 s first
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    # Still there: the head's own process group (it is the group leader, see setsid above).
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    echo "stopped the Ray head (pid $pid)"
  else
    echo "the head (pid $pid) had already exited"
  fi
  rm -f "$PIDFILE"
}

status() {
  if running; then
    echo "running: pid $(cat "$PIDFILE"), dashboard http://127.0.0.1:$DASHBOARD_PORT"
  else
    echo "not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
