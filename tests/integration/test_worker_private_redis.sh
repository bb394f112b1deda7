#!/usr/bin/env bash
# test_worker_private_redis.sh: the embedded default (no redis.host) keeps
# other local users out of the worker's state. The worker starts its private
# redis-server and applies ratings and a forget request through it, while a
# client without the password (redis-cli, as any local user could run it)
# gets NOAUTH for reads, writes and CONFIG; no requirepass or password-like
# token is on the command line of redis-server or of the worker (what `ps`
# shows), and when run as root, user nobody cannot enter the server's
# directory either. On SIGTERM the server and its directory are gone.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
command -v redis-cli >/dev/null || { echo "SKIP: redis-cli not installed"; exit 77; }

awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 10; u++) for (i = 1; i <= 5; i++) print u "," i "," (u + i) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
metric_is() { local page; page="$(curl -fsS --max-time 5 "$URL/metrics")" || return 1;
  grep -qxF "$1 $2" <<<"$page"; }
# Not start_worker: that one points the worker at worker_lib's Redis.
"$BIN" worker --method foldin --cycle.interval.ms 100 --checkpoint.interval.ms 200 \
  --metrics.port "$PORT" >"$TMP/private.out" 2>"$TMP/private.err" &
WORKER_PID=$!
wait_for 60 "the private redis-server" grep -q 'started a private redis-server' "$TMP/private.err"
RPORT=$(sed -n 's/.*started a private redis-server on 127\.0\.0\.1:\([0-9]*\).*/\1/p' \
  "$TMP/private.err" | head -1)
[ -n "$RPORT" ] || fail "no port in: $(head -3 "$TMP/private.err")"
wait_for 60 "all $N ratings applied" metric_is unlearnd_ratings_applied_total "$N"
"$BIN" produce forget --user 3 --items 1,2 --reason MISTAKE --request-id p-1 >/dev/null 2>&1 ||
  fail "produce forget"
wait_for 60 "the forget request completed" metric_is unlearnd_forget_requests_completed_total 1

# Without the password: NOAUTH, whatever the command.
for cmd in "ping" "keys *" "get ul:model" "set ul:model x" "flushall" "config get requirepass"; do
  read -ra words <<<"$cmd"
  reply=$(redis-cli -p "$RPORT" "${words[@]}" 2>&1 || true)
  case "$reply" in
    NOAUTH*) ;;
    *) fail "'$cmd' without the password answered: $reply" ;;
  esac
done
# Nothing on a command line: redis-server's and the worker's.
RPID=$(pgrep -P "$WORKER_PID" redis-server | head -1)
[ -n "$RPID" ] || fail "no redis-server child of the worker"
for pid in "$RPID" "$WORKER_PID"; do
  line=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  if grep -qiE 'requirepass|[0-9a-f]{32}' <<<"$line"; then fail "pid $pid shows: $line"; fi
done
RDIR=$(readlink "/proc/$RPID/cwd")
[ "$(stat -c %a "$RDIR")" = 700 ] || fail "$RDIR has mode $(stat -c %a "$RDIR")"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  if setpriv --reuid=65534 --regid=65534 --clear-groups ls "$RDIR" >/dev/null 2>&1; then
    fail "user nobody can list $RDIR"
  fi
  reply=$(setpriv --reuid=65534 --regid=65534 --clear-groups redis-cli -p "$RPORT" get ul:model 2>&1 || true)
  case "$reply" in NOAUTH*) ;; *) fail "user nobody got: $reply" ;; esac
fi

rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc: $(tail -5 "$TMP/private.err")"
! kill -0 "$RPID" 2>/dev/null || fail "redis-server $RPID still running after the worker stopped"
[ ! -e "$RDIR" ] || fail "$RDIR left behind"
echo "ok: private Redis on port $RPORT answered NOAUTH without the password; $N ratings and 1 forget request applied"
