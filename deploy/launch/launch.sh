#!/usr/bin/env bash
# Multi-node launch without Kubernetes (issue #8 item 3): starts the coordinator, the learner
# rank(s) and N search actors on a list of hosts, over ssh or Slurm's srun, with each role's
# config written from deploy/launch/templates (addresses, names and ranks filled in), then
# supervises them until the learner or the coordinator ends, or Ctrl-C / SIGTERM (which stops
# actors first, then the learner, then the coordinator).
#
# Placement: host 1 runs the coordinator and learner rank 0; learner rank r runs on host r+1;
# actors go round-robin over the hosts after the learner's (over all hosts when there are no
# others), one GPU each (CUDA_VISIBLE_DEVICES), skipping the GPU a learner rank holds.
#
#   deploy/launch/launch.sh --hosts node1,node2,node3 --model /shared/base --actors 12
#   sbatch -N 3 --gres=gpu:8 --wrap 'deploy/launch/launch.sh --model /shared/base'   # Slurm
#   deploy/launch/launch.sh --hosts node1,node2 --model /shared/base --dry-run        # plan only
#
# Hosts: --hosts, else --hostfile, else Slurm's allocation (`scontrol show hostnames
# "$SLURM_JOB_NODELIST"`). Each host name must resolve from the others (it is also the address
# the roles use), and the binary and the model must exist at the same path on every host.
# ssh mode copies the configs to each host; srun mode needs --workdir on a shared filesystem.
# Learner ranks: `deepsearch learner` takes --rank/--world-size (or RANK/WORLD_SIZE) and finds
# rank 0 at MASTER_ADDR:MASTER_PORT; with --learner-ranks > 1 the learner's checkpoint_dir must be
# on a shared filesystem (every rank resumes from it).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: launch.sh --model DIR [options]
  --hosts LIST          hosts, comma- or space-separated (default: --hostfile, then Slurm's)
  --hostfile FILE       one host per line (# comments allowed)
  --model DIR           Hugging Face checkpoint, same path on every host (required)
  --actors N            number of search actors (default: one per free GPU of the actor hosts)
  --learner-ranks W     learner ranks, one per host (default 1; see the note on ranks)
  --gpus-per-host G     GPUs per host (default 8; 0 = CPU only: device cpu, dtype f32)
  --bin PATH            deepsearch binary on the hosts (default $DEEPSEARCH_BIN or `deepsearch`)
  --workdir DIR         run folder on every host: configs, logs, pids, coordinator state
                        (default $PWD/runs/launch-<date>)
  --templates DIR       role config templates (default deploy/launch/templates)
  --launcher ssh|srun   default: srun inside a Slurm job, else ssh
  --rsh CMD             remote shell of ssh mode, run as `CMD HOST COMMAND` (default
                        "ssh -o BatchMode=yes"); e.g. a wrapper running `ip netns exec`
  --coordinator-port P  default 50051
  --learner-port P      default 50061
  --rendezvous-port P   learner ranks' MASTER_PORT (default 29500)
  --dry-run             print the plan and every command, start nothing
EOF
}

die() { echo "launch: error: $*" >&2; exit 2; }
log() { echo "launch: $*" >&2; }

HERE=$(cd "$(dirname "$0")" && pwd)
HOSTS_ARG="" HOSTFILE="" MODEL="" ACTORS="" RANKS=1 GPUS=8 DRY=0
BIN=${DEEPSEARCH_BIN:-deepsearch}
WORKDIR="$PWD/runs/launch-$(date +%Y%m%d-%H%M%S)"
TEMPLATES="$HERE/templates"
LAUNCHER="" RSH="ssh -o BatchMode=yes"
CPORT=50051 LPORT=50061 RPORT=29500
while [[ $# -gt 0 ]]; do
    case $1 in
        --hosts) HOSTS_ARG=$2; shift 2 ;;
        --hostfile) HOSTFILE=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --actors) ACTORS=$2; shift 2 ;;
        --learner-ranks) RANKS=$2; shift 2 ;;
        --gpus-per-host) GPUS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --templates) TEMPLATES=$2; shift 2 ;;
        --launcher) LAUNCHER=$2; shift 2 ;;
        --rsh) RSH=$2; shift 2 ;;
        --coordinator-port) CPORT=$2; shift 2 ;;
        --learner-port) LPORT=$2; shift 2 ;;
        --rendezvous-port) RPORT=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# ---- hosts -------------------------------------------------------------------------------------
HOSTS=()
if [[ -n $HOSTS_ARG ]]; then
    read -r -a HOSTS <<<"${HOSTS_ARG//,/ }"
elif [[ -n $HOSTFILE ]]; then
    [[ -f $HOSTFILE ]] || die "--hostfile $HOSTFILE: no such file"
    mapfile -t HOSTS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HOSTFILE" | grep -v '^$')
elif [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
    command -v scontrol >/dev/null || die "SLURM_JOB_NODELIST is set but scontrol is not on PATH"
    mapfile -t HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
fi
((${#HOSTS[@]} > 0)) || die "no hosts: give --hosts, --hostfile, or run inside a Slurm job"
[[ -n $MODEL ]] || die "--model DIR is required (a Hugging Face checkpoint on every host)"
[[ $RANKS =~ ^[1-9][0-9]*$ ]] || die "--learner-ranks $RANKS: want a positive integer"
[[ $GPUS =~ ^[0-9]+$ ]] || die "--gpus-per-host $GPUS: want an integer >= 0"
((RANKS <= ${#HOSTS[@]})) || die "--learner-ranks $RANKS: only ${#HOSTS[@]} host(s)"
[[ $WORKDIR == /* ]] || WORKDIR="$PWD/$WORKDIR"
# a relative binary path would be resolved in the workdir on the hosts: make it absolute here
[[ $BIN == */* && $BIN != /* ]] && BIN="$PWD/$BIN"
for t in coordinator learner actor; do
    [[ -f $TEMPLATES/$t.toml ]] || die "template $TEMPLATES/$t.toml missing"
done
if [[ -z $LAUNCHER ]]; then
    if [[ -n ${SLURM_JOB_ID:-} ]]; then LAUNCHER=srun; else LAUNCHER=ssh; fi
fi
[[ $LAUNCHER == ssh || $LAUNCHER == srun ]] || die "--launcher $LAUNCHER: want ssh or srun"

addr() { local h=${1#*@}; echo "${h%%:*}"; } # user@host -> host
HEAD=$(addr "${HOSTS[0]}")
COORD="$HEAD:$CPORT"
LEARNER="$HEAD:$LPORT"
if ((GPUS > 0)); then DEVICE=cuda DTYPE=bf16; else DEVICE=cpu DTYPE=f32; fi

# ---- placement ---------------------------------------------------------------------------------
declare -A USED=() # host index -> GPUs taken
for ((r = 0; r < RANKS; r++)); do USED[$r]=1; done
actor_hosts=()
for ((i = RANKS; i < ${#HOSTS[@]}; i++)); do actor_hosts+=("$i"); done
((${#actor_hosts[@]} > 0)) || for ((i = 0; i < ${#HOSTS[@]}; i++)); do actor_hosts+=("$i"); done
if [[ -z $ACTORS ]]; then
    if ((GPUS == 0)); then
        ACTORS=${#actor_hosts[@]}
    else
        ACTORS=0
        for i in "${actor_hosts[@]}"; do ACTORS=$((ACTORS + GPUS - ${USED[$i]:-0})); done
    fi
fi
[[ $ACTORS =~ ^[0-9]+$ ]] || die "--actors $ACTORS: want an integer"
ACTOR_HOST=() ACTOR_GPU=()
for ((a = 0; a < ACTORS; a++)); do
    i=${actor_hosts[a % ${#actor_hosts[@]}]}
    g=${USED[$i]:-0}
    if ((GPUS > 0 && g >= GPUS)); then
        die "actor $((a + 1)): no free GPU left on ${HOSTS[i]} (--gpus-per-host $GPUS); use fewer --actors"
    fi
    USED[$i]=$((g + 1))
    ACTOR_HOST+=("$i")
    ACTOR_GPU+=("$g")
done

# ---- configs -----------------------------------------------------------------------------------
fill() { # fill TEMPLATE OUT [ACTOR_NAME]
    sed -e "s|@COORDINATOR_PORT@|$CPORT|g" -e "s|@LEARNER_PORT@|$LPORT|g" \
        -e "s|@COORDINATOR@|$COORD|g" -e "s|@LEARNER@|$LEARNER|g" -e "s|@WORKDIR@|$WORKDIR|g" \
        -e "s|@MODEL@|$MODEL|g" -e "s|@DEVICE@|$DEVICE|g" -e "s|@DTYPE@|$DTYPE|g" \
        -e "s|@ACTOR_NAME@|${3:-}|g" "$1" >"$2"
    if grep -n '@[A-Z_]*@' "$2" >&2; then die "$1: unknown placeholder(s) above"; fi
}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
fill "$TEMPLATES/coordinator.toml" "$STAGE/coordinator.toml"
fill "$TEMPLATES/learner.toml" "$STAGE/learner.toml"
for ((a = 0; a < ACTORS; a++)); do
    fill "$TEMPLATES/actor.toml" "$STAGE/actor-$((a + 1)).toml" "actor-$((a + 1))"
done
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STAGE/admin.token"

# ---- commands ----------------------------------------------------------------------------------
# role names, host index and command line, in start order
NAMES=() WHERE=() CMDS=()
add() { NAMES+=("$1"); WHERE+=("$2"); CMDS+=("$3"); }
common="RUST_LOG=\${RUST_LOG:-info} NO_COLOR=1"
add coordinator 0 "env $common $BIN coordinator --config $WORKDIR/coordinator.toml"
for ((r = 0; r < RANKS; r++)); do
    gpu=""
    ((GPUS > 0)) && gpu="CUDA_VISIBLE_DEVICES=0 "
    add "learner-$r" "$r" "env $common ${gpu}RANK=$r WORLD_SIZE=$RANKS MASTER_ADDR=$HEAD MASTER_PORT=$RPORT $BIN learner --config $WORKDIR/learner.toml --rank $r --world-size $RANKS"
done
for ((a = 0; a < ACTORS; a++)); do
    gpu=""
    ((GPUS > 0)) && gpu="CUDA_VISIBLE_DEVICES=${ACTOR_GPU[a]} "
    add "actor-$((a + 1))" "${ACTOR_HOST[a]}" "env $common ${gpu}$BIN actor --config $WORKDIR/actor-$((a + 1)).toml"
done

echo "launch: $LAUNCHER on ${#HOSTS[@]} host(s); coordinator $COORD, learner rank 0 $LEARNER, $RANKS rank(s), $ACTORS actor(s); workdir $WORKDIR"
for ((k = 0; k < ${#NAMES[@]}; k++)); do
    printf 'launch: %-14s on %-20s %s\n' "${NAMES[k]}" "${HOSTS[${WHERE[k]}]}" "${CMDS[k]}"
done
if ((DRY == 1)); then
    echo "launch: dry run; configs that would be written:"
    for f in "$STAGE"/*.toml; do echo "----- $WORKDIR/$(basename "$f")"; cat "$f"; done
    exit 0
fi

# ---- start -------------------------------------------------------------------------------------
remote() { # remote HOST_INDEX COMMAND (stdin passes through)
    # shellcheck disable=SC2086 # RSH is a command line, split on purpose
    $RSH "${HOSTS[$1]}" "$2"
}
mkdir -p "$WORKDIR"
if [[ $LAUNCHER == ssh ]]; then
    declare -A PREPARED=()
    for ((k = 0; k < ${#NAMES[@]}; k++)); do
        i=${WHERE[k]}
        [[ -n ${PREPARED[$i]:-} ]] && continue
        PREPARED[$i]=1
        remote "$i" "mkdir -p $WORKDIR/logs $WORKDIR/pids && umask 077 && cat > $WORKDIR/configs.tar" \
            < <(tar -C "$STAGE" -cf - .) || die "cannot reach ${HOSTS[i]} with: $RSH"
        remote "$i" "cd $WORKDIR && tar -xf configs.tar && rm configs.tar" </dev/null
    done
else
    mkdir -p "$WORKDIR/logs" "$WORKDIR/pids"
    (umask 077 && cp "$STAGE"/* "$WORKDIR/")
fi

PIDS=() # local handles (ssh clients or srun steps), same order as NAMES
stop_all() {
    local k i
    trap - INT TERM
    log "stopping: actors, then learner, then coordinator"
    for group in actor learner coordinator; do
        for ((k = ${#PIDS[@]} - 1; k >= 0; k--)); do
            [[ ${NAMES[k]} == "$group"* ]] || continue
            i=${WHERE[k]}
            if [[ $LAUNCHER == ssh ]]; then
                remote "$i" "kill -TERM \$(cat $WORKDIR/pids/${NAMES[k]}.pid) 2>/dev/null" </dev/null || true
            else
                kill -TERM "${PIDS[k]}" 2>/dev/null || true
            fi
        done
        for ((k = 0; k < ${#PIDS[@]}; k++)); do
            [[ ${NAMES[k]} == "$group"* ]] && { wait "${PIDS[k]}" 2>/dev/null || true; }
        done
    done
    log "stopped; logs in $WORKDIR/logs"
}
trap 'stop_all; exit 130' INT TERM

for ((k = 0; k < ${#NAMES[@]}; k++)); do
    name=${NAMES[k]} i=${WHERE[k]}
    if [[ $LAUNCHER == ssh ]]; then
        remote "$i" "cd $WORKDIR && echo \$\$ > pids/$name.pid && exec ${CMDS[k]} > logs/$name.log 2>&1" </dev/null &
    else
        gres=()
        ((GPUS > 0)) && [[ $name != coordinator ]] && gres=(--gres=gpu:1)
        srun --nodes=1 --ntasks=1 --nodelist="${HOSTS[i]}" --overlap "${gres[@]}" \
            --output="$WORKDIR/logs/$name.log" bash -c "cd $WORKDIR && exec ${CMDS[k]}" </dev/null &
    fi
    PIDS+=("$!")
    # the learner and actors retry their connections, but starting the coordinator first
    # keeps the logs free of needless reconnects
    [[ $name == coordinator ]] && sleep 2
done
log "started ${#PIDS[@]} role(s); logs in $WORKDIR/logs; admin:"
log "  $BIN admin --coordinator $COORD --token-file $WORKDIR/admin.token status"

# supervise: an actor may end (it is logged; the job goes on); the learner or the coordinator
# ending ends the job. (`wait -n -p` needs bash >= 5.1.)
LIVE=("${PIDS[@]}")
while ((${#LIVE[@]} > 0)); do
    done_pid=""
    wait -n -p done_pid "${LIVE[@]}" && rc=0 || rc=$?
    [[ -n $done_pid ]] || continue
    rest=()
    for p in "${LIVE[@]}"; do [[ $p == "$done_pid" ]] || rest+=("$p"); done
    LIVE=("${rest[@]}")
    for ((k = 0; k < ${#PIDS[@]}; k++)); do
        [[ ${PIDS[k]} == "$done_pid" ]] || continue
        log "${NAMES[k]} on ${HOSTS[${WHERE[k]}]} ended (exit $rc); log: $WORKDIR/logs/${NAMES[k]}.log"
        if [[ ${NAMES[k]} != actor-* ]]; then
            stop_all
            exit "$rc"
        fi
    done
done
log "every role ended"
