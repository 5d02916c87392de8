#!/usr/bin/env bash
# Multi-host test on one machine (issue #8 item 4): the coordinator, the learner, two search
# actors and an operator each get their own network namespace and address, joined by a bridge
# that lives in a namespace of its own (the host's network is never touched). The roles run as
# separate `deepsearch` processes with the configs a cluster would use (listen 0.0.0.0, peers by
# address). Checks, in order:
#   1. the job runs: the learner publishes policy version >= 2 and both actors swap weights in
#      (each actor's policy version >= 1 in `deepsearch admin status`);
#   2. cutting one actor's link (`ip link set eth0 down` in its namespace) makes the coordinator
#      drop that actor and expire its leases (admin status + /metrics leases_expired_total), and
#      the job goes on: the policy version keeps rising, served by the other actor;
#   3. bringing the link back up, the actor registers again and gets work;
#   4. deploy/launch/launch.sh starts the same kind of job over the namespaces (its remote shell
#      is `ip netns exec`), the learner publishes versions, and SIGTERM stops every role.
# Namespaces and processes are removed on every exit (trap), failures and Ctrl-C included.
# If DEEPSEARCH_BIN is unset and target/debug/deepsearch is missing, it is built first.
# Needs root and `ip netns`; otherwise prints SKIP and exits 0.
#
# Usage: deploy/netns/netns-test.sh            (binary: $DEEPSEARCH_BIN or target/debug/deepsearch)
# Env:   DEEPSEARCH_BIN   the deepsearch binary to test
#        NETNS_SUBNET     first three octets of the test subnet (default 10.231.77)
#        NETNS_KEEP=1     keep the work folder (configs, logs) after the run
#        NETNS_TIMEOUT    seconds allowed for each wait (default 60)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${DEEPSEARCH_BIN:-$ROOT/target/debug/deepsearch}
NET=${NETNS_SUBNET:-10.231.77}
WAIT=${NETNS_TIMEOUT:-60}
TAG="ds$$"
T0=$(date +%s)

log() { printf 'netns-test [%3ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
skip() { echo "netns-test: SKIP: $*" >&2; exit 0; }
fail() {
    log "FAIL: $*"
    if [[ -n ${WORK:-} && -d ${WORK:-} ]]; then
        for f in "$WORK"/*.log; do
            [[ -f $f ]] || continue
            echo "----- last lines of $(basename "$f") -----" >&2
            tail -n 15 "$f" | sed 's/\x1b\[[0-9;]*m//g' >&2
        done
    fi
    exit 1
}

# ---- preconditions ---------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || skip "needs root for network namespaces (run as root, or in CI as root)"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
if ! ip netns add "$TAG-probe" 2>/dev/null; then
    skip "ip netns add is not permitted here (no CAP_SYS_ADMIN or no netns support)"
fi
ip netns del "$TAG-probe"
if [[ -z ${DEEPSEARCH_BIN:-} && ! -x $BIN ]]; then
    log "building $BIN (cargo build -p deepsearch-cli)"
    (cd "$ROOT" && cargo build --locked -p deepsearch-cli) || fail "cargo build -p deepsearch-cli"
fi
[[ -x $BIN ]] || fail "no deepsearch binary at $BIN (cargo build -p deepsearch-cli, or set DEEPSEARCH_BIN)"
BIN=$(realpath "$BIN")

# ---- topology --------------------------------------------------------------------------------
# role         namespace     address
# operator     $TAG-br       $NET.1   (holds the bridge too; runs `deepsearch admin`)
# coordinator  $TAG-coord    $NET.2
# learner      $TAG-learn    $NET.3
# actor-1      $TAG-act1     $NET.11
# actor-2      $TAG-act2     $NET.12
BR_NS="$TAG-br"
declare -A ADDR=([coord]="$NET.2" [learn]="$NET.3" [act1]="$NET.11" [act2]="$NET.12")
ROLES=(coord learn act1 act2)
PIDS=()
LAUNCH_PID=""
TOKEN=""
WORK=$(mktemp -d "${TMPDIR:-/tmp}/deepsearch-netns.XXXXXX")

stop_pids() { # stop_pids SECONDS PID...: SIGTERM, up to SECONDS to exit, then SIGKILL
    local pid alive grace=$1
    shift
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 $((grace * 10))); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && return 0
        sleep 0.1
    done
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && echo "netns-test: pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)) ignored SIGTERM for $grace s; killed" >&2
        kill -KILL "$pid" 2>/dev/null
    done
}

stop_roles() { # the roles started by this script: actors, then learner, then coordinator
    ((${#PIDS[@]} > 2)) && stop_pids 10 "${PIDS[@]:2}"
    ((${#PIDS[@]} > 1)) && stop_pids 10 "${PIDS[1]}"
    ((${#PIDS[@]} > 0)) && stop_pids 10 "${PIDS[0]}"
    PIDS=()
}

cleanup() {
    local rc=$? r f
    set +e
    stop_roles
    # launch.sh stops its own roles; any it left are stopped by their pid files
    [[ -n $LAUNCH_PID ]] && stop_pids 30 "$LAUNCH_PID"
    for f in "$WORK"/launch/pids/*.pid; do
        [[ -f $f ]] && stop_pids 10 "$(cat "$f")"
    done
    { wait; } 2>/dev/null
    for r in "${ROLES[@]}"; do ip netns del "$TAG-$r" 2>/dev/null; done
    ip netns del "$BR_NS" 2>/dev/null
    if [[ ${NETNS_KEEP:-0} == 1 ]]; then
        echo "netns-test: work folder kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$BR_NS"
ip -n "$BR_NS" link set lo up
ip -n "$BR_NS" link add br0 type bridge
ip -n "$BR_NS" link set br0 up
ip -n "$BR_NS" addr add "$NET.1/24" dev br0
for r in "${ROLES[@]}"; do
    ns="$TAG-$r"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # eth0 in the role's namespace, its peer (named after the role) on the bridge
    ip -n "$ns" link add eth0 type veth peer name "v-$r" netns "$BR_NS"
    ip -n "$BR_NS" link set "v-$r" master br0 up
    ip -n "$ns" addr add "${ADDR[$r]}/24" dev eth0
    ip -n "$ns" link set eth0 up
done
log "namespaces up: ${ROLES[*]} on $NET.0/24 (bridge in $BR_NS)"

# ---- a tiny model and the role configs -------------------------------------------------------
export RUST_LOG=info NO_COLOR=1 OMP_NUM_THREADS=1 # the checks read the roles' warn lines
"$BIN" gen --task countdown --count 64 --seed 1 --params '{"min_numbers":3,"max_numbers":3}' \
    --traces --out "$WORK/sft.jsonl" >"$WORK/gen.log" 2>&1 || fail "deepsearch gen"
"$BIN" sft --init countdown --data "$WORK/sft.jsonl" --out "$WORK/model" --max-steps 1 \
    --threads 1 >"$WORK/sft.log" 2>&1 || fail "deepsearch sft"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/admin.token"
TOKEN="$WORK/admin.token"

cat >"$WORK/coordinator.toml" <<EOF
listen = "0.0.0.0:50051"
metrics_listen = "0.0.0.0:9101"
state_dir = "$WORK/coordinator-state"
[[sources]]
kind = "countdown"
count = 200
seed = 7
config = { min_numbers = 3, max_numbers = 3 }
[filter]
k = 2
[schedule]
group_size = 4
lease_ttl = "6s"
actor_timeout = "3s"
heartbeat_interval = "1s"
sweep_interval = "500ms"
[admin]
token_file = "$WORK/admin.token"
EOF
cat >"$WORK/learner.toml" <<EOF
[model]
path = "$WORK/model"
[learner]
prompts_per_step = 2
trajectories_per_prompt = 4
mini_batches = 1
micro_batch_size = 8
lr = 1e-3
[runtime]
listen = "0.0.0.0:50061"
metrics_listen = "0.0.0.0:9102"
advertise = "${ADDR[learn]}:50061"
prompts_per_step = 2
max_queued_trajectories = 256
[runtime.coordinator]
address = "${ADDR[coord]}:50051"
EOF
for i in 1 2; do
    cat >"$WORK/actor-$i.toml" <<EOF
[model]
dir = "$WORK/model"
[actor]
name = "actor-$i"
coordinator = "${ADDR[coord]}:50051"
learner = "${ADDR[learn]}:50061"
capacity = 4
rpc_timeout = "2s"
connect_timeout = "1s"
backoff_max = "1s"
flush_timeout = "2s"
[actor.search]
segment_delimiter = "\n"
segment_tokens = 8
max_depth = 4
expansion_width = 2
trajectories_per_tree = 4
max_expansions = 8
[actor.search.overlong]
buffer_tokens = 8
EOF
done

# ---- helpers ---------------------------------------------------------------------------------
start() { # start NAME NS ARGS...: runs the binary in NS, logs to $WORK/NAME.log
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$BIN" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
}
admin() { # deepsearch admin from the operator namespace
    ip netns exec "$BR_NS" "$BIN" admin --coordinator "${ADDR[coord]}:50051" \
        --token-file "$TOKEN" --timeout 2s "$@"
}
status() { admin status 2>/dev/null || true; }
admin_answers() { admin status >/dev/null 2>&1; }
policy_version() { status | awk '/^policy version/ {print $3}'; }
# actor_field NAME: "<leases> <policy version>" of a registered actor, empty when not registered
actor_field() { status | awk -v n="$1" '$1 == n {v = $NF; sub(/^v/, "", v); print $5, v}'; }
metric() { # metric NAME: sum of a coordinator metric over its labels
    ip netns exec "$BR_NS" curl -fsS --max-time 2 "http://${ADDR[coord]}:9101/metrics" 2>/dev/null |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'
}
wait_for() { # wait_for DESCRIPTION COMMAND...: polls every 0.5 s up to $WAIT s
    local what=$1 deadline=$(($(date +%s) + WAIT))
    shift
    until "$@"; do
        [[ $(date +%s) -lt $deadline ]] || fail "timed out after ${WAIT}s waiting for: $what"
        sleep 0.5
    done
    log "ok: $what"
}
version_at_least() { local v; v=$(policy_version); [[ -n $v && $v -ge $1 ]]; }
actor_version_at_least() { local f; f=$(actor_field "$1"); [[ -n $f && ${f#* } -ge $2 ]]; }
actor_gone_or_idle() { local f; f=$(actor_field "$1"); [[ -z $f || ${f%% *} -eq 0 ]]; }
actor_has_leases() { local f; f=$(actor_field "$1"); [[ -n $f && ${f%% *} -gt 0 ]]; }
expired_above() { [[ $(metric deepsearch_coordinator_leases_expired_total) -gt $1 ]]; }

# ---- 1. the job runs -------------------------------------------------------------------------
start coordinator "$TAG-coord" coordinator --config "$WORK/coordinator.toml"
wait_for "coordinator answers admin status at ${ADDR[coord]}:50051" admin_answers
start learner "$TAG-learn" learner --config "$WORK/learner.toml"
start actor-1 "$TAG-act1" actor --config "$WORK/actor-1.toml"
start actor-2 "$TAG-act2" actor --config "$WORK/actor-2.toml"
wait_for "learner published policy version >= 2" version_at_least 2
wait_for "actor-1 swapped in policy version >= 1" actor_version_at_least actor-1 1
wait_for "actor-2 swapped in policy version >= 1" actor_version_at_least actor-2 1
wait_for "actor-2 holds leases" actor_has_leases actor-2
status | sed 's/^/    /' >&2

# ---- 2. cut actor-2's link -------------------------------------------------------------------
# With a tiny model a lease lasts milliseconds, so actor-2 may finish every lease it holds
# between a status check and the cut, and then no lease is left to expire. Freeze it (SIGSTOP)
# first, and cut its link only while the coordinator sees it holding leases that it can no
# longer report; it resumes (SIGCONT) behind the cut link.
ACT2_PID=${PIDS[3]}
[[ $(cat "/proc/$ACT2_PID/comm" 2>/dev/null) == deepsearch ]] || fail "pid $ACT2_PID is not actor-2's deepsearch process"
frozen_with_leases() {
    kill -STOP "$ACT2_PID" || return 1
    sleep 0.3 # a report already on the wire lands before the check
    actor_has_leases actor-2 && return 0
    kill -CONT "$ACT2_PID"
    return 1
}
wait_for "actor-2 frozen (SIGSTOP) while holding leases" frozen_with_leases
expired0=$(metric deepsearch_coordinator_leases_expired_total)
v_cut=$(policy_version)
ip -n "$TAG-act2" link set eth0 down
kill -CONT "$ACT2_PID"
log "cut actor-2's link (ip link set eth0 down in $TAG-act2) at policy version $v_cut; leases expired so far: $expired0"
wait_for "coordinator expired actor-2's leases (leases_expired_total > $expired0)" expired_above "$expired0"
wait_for "actor-2 dropped or holding no lease" actor_gone_or_idle actor-2
grep 'actor silent past its timeout; dropped' "$WORK/coordinator.log" | grep -q 'actor_id=actor-2' ||
    fail "coordinator log does not record actor-2 as lost"
log "coordinator log: $(grep -c 'lease expired; problem will be re-leased' "$WORK/coordinator.log") lease(s) expired"
# one of those problems, as the operator sees it: no longer held by the expired lease
expired_line=$(grep 'lease expired; problem will be re-leased' "$WORK/coordinator.log" |
    grep -m 1 'actor_id=actor-2') || fail "no lease of actor-2 expired in the coordinator log"
lost=$(grep -o 'problem_id=[^ ]*' <<<"$expired_line" | cut -d= -f2)
old_lease=$(grep -o 'lease_id=[^ ]*' <<<"$expired_line" | cut -d= -f2)
[[ -n $lost ]] || fail "no problem id in the coordinator's lease-expiry log lines"
admin problem show "$lost" >"$WORK/problem.txt" 2>&1 || fail "admin problem show $lost"
if grep -q "^lease *$old_lease" "$WORK/problem.txt"; then fail "problem $lost still holds expired lease $old_lease"; fi
log "ok: problem $lost is out of actor-2's hands ($(grep -E '^(status|attempts)' "$WORK/problem.txt" | tr -s ' ' | paste -sd ';' -))"
wait_for "job goes on without actor-2: policy version >= $((v_cut + 3))" version_at_least $((v_cut + 3))
v_now=$(policy_version)
wait_for "actor-1 follows the learner (policy version >= $((v_cut + 1)))" actor_version_at_least actor-1 $((v_cut + 1))
status | sed 's/^/    /' >&2

# ---- 3. the link comes back ------------------------------------------------------------------
ip -n "$TAG-act2" link set eth0 up
log "restored actor-2's link"
wait_for "actor-2 registered again and swapped in a newer version (>= $v_now)" \
    actor_version_at_least actor-2 "$v_now"
wait_for "actor-2 holds leases again" actor_has_leases actor-2

# every role must still be alive
for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "a role process ($pid) exited early"
done
status | sed 's/^/    /' >&2
stop_roles
log "ok: phases 1-3 passed; roles stopped"

# ---- 4. the same kind of job, started by deploy/launch/launch.sh ----------------------------
# Host 1 (the coordinator's namespace) runs the coordinator and learner rank 0, hosts 2 and 3
# (the actors' namespaces) one actor each, from the shipped templates (deploy/launch/templates,
# with smaller trees and steps);
# the remote shell is `ip netns exec` behind a wrapper that maps each address to its namespace.
cat >"$WORK/nsrsh" <<EOF
#!/usr/bin/env bash
case \$1 in
    ${ADDR[coord]}) ns=$TAG-coord ;;
    ${ADDR[act1]}) ns=$TAG-act1 ;;
    ${ADDR[act2]}) ns=$TAG-act2 ;;
    *) echo "nsrsh: unknown host \$1" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" bash -c "\$2"
EOF
chmod +x "$WORK/nsrsh"
# the shipped templates with smaller trees and steps, so a random model makes steps in seconds
mkdir -p "$WORK/templates"
shrink() { # shrink FILE 'KEY = OLD' 'KEY = NEW'...: edit a copy of a shipped template
    local f=$1 out="$WORK/templates/$1"
    shift
    cp "$ROOT/deploy/launch/templates/$f" "$out"
    while (($# > 0)); do
        grep -q "^$1" "$out" || fail "deploy/launch/templates/$f has no line '$1' (test out of date)"
        sed -i "s/^$1/$2/" "$out"
        shift 2
    done
}
shrink coordinator.toml 'count = 2000' 'count = 200' 'group_size = 8' 'group_size = 4'
shrink learner.toml 'prompts_per_step = 8' 'prompts_per_step = 2'
shrink actor.toml 'capacity = 8' 'capacity = 4' 'segment_tokens = 16' 'segment_tokens = 8' \
    'max_depth = 10' 'max_depth = 4' 'max_expansions = 64' 'max_expansions = 8' \
    'buffer_tokens = 32' 'buffer_tokens = 8'
"$ROOT/deploy/launch/launch.sh" --hosts "${ADDR[coord]},${ADDR[act1]},${ADDR[act2]}" \
    --model "$WORK/model" --gpus-per-host 0 --bin "$BIN" --workdir "$WORK/launch" \
    --templates "$WORK/templates" --rsh "$WORK/nsrsh" >"$WORK/launch.log" 2>&1 &
LAUNCH_PID=$!
TOKEN="$WORK/launch/admin.token"
wait_for "launch.sh: actor-1 registered" actor_version_at_least actor-1 0
wait_for "launch.sh: actor-2 registered" actor_version_at_least actor-2 0
wait_for "launch.sh: learner published policy version >= 2" version_at_least 2
status | sed 's/^/    /' >&2
kill -TERM "$LAUNCH_PID"
for _ in $(seq 1 300); do
    kill -0 "$LAUNCH_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$LAUNCH_PID" 2>/dev/null && fail "launch.sh did not stop its roles within 30 s of SIGTERM"
LAUNCH_PID=""
grep -q 'launch: stopped' "$WORK/launch.log" || fail "launch.sh did not report a clean stop"
for f in "$WORK"/launch/pids/*.pid; do
    if kill -0 "$(cat "$f")" 2>/dev/null; then fail "$(basename "$f" .pid) still running after launch.sh stopped"; fi
done
log "ok: launch.sh ran coordinator, learner and 2 actors on 3 hosts and stopped them on SIGTERM"
log "PASS: multi-host job over $NET.0/24: weights swapped, a lost actor's leases expired and returned, the job went on, the actor rejoined; launch.sh works across hosts"
