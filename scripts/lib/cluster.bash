# Shared by scripts/compare-cluster and scripts/fsync-stall: start, inspect and stop a
# 3-member cluster of etcd or Bramble on 127.0.0.1, every member optionally under strace with
# delayed fsync/fdatasync (ARCHITECTURE.md's SD-card emulation). Source it after setting
# ETCD_BIN, BRAMBLE_BIN, BENCH_BIN, HEARTBEAT, ELECTION, START_TIMEOUT and defining die().
#
# A cluster is described by arrays indexed by member (0..2): mdir (member dir), cport/pport
# (client and peer ports), wpid (GNU time wrapper around it all), spid (the server process
# itself, never strace's), plus cl_kind and cl_endpoints (comma list of client endpoints).

# PIDs this script started (wrappers and servers); stop_everything stops exactly these.
started=()

# Stops every process in $started: SIGTERM, 5 s grace, then SIGKILL.
stop_everything() {
    local p
    for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${started[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    started=()
}

# True if something already listens on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# find_server ROOT EXE: prints the pid of the process running EXE among ROOT's descendants
# (GNU time's child, or strace's: strace first forks short-lived probes of its own).
find_server() {
    local queue=("$1") want=$2 p c
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null || true); do
            if [ "$(readlink "/proc/$c/exe" 2>/dev/null || true)" = "$want" ]; then
                echo "$c"
                return 0
            fi
            queue+=("$c")
        done
    done
    return 1
}

# server_bin KIND: the binary of etcd or bramble.
server_bin() {
    case $1 in
        etcd) echo "$ETCD_BIN" ;;
        bramble) echo "$BRAMBLE_BIN" ;;
        *) die "unknown server kind $1" ;;
    esac
}

# cluster_start KIND DIR PORT TOKEN DELAYS: starts members 0..2 of KIND with data under
# DIR/mI and ports PORT.. PORT+5 (client 2i, peer 2i+1). DELAYS is three space-separated fsync
# delays in microseconds, one per member (0: not under strace). START_ORDER (default "0 1 2")
# and HEAD_START (seconds to wait after the first member before starting the others, default
# 0) let a caller give one member a head start in the first election. Does not wait for a
# leader (see cluster_wait_leader).
cluster_start() {
    local kind=$1 dir=$2 port=$3 token=$4
    local -a delays
    read -r -a delays <<<"$5"
    local bin want i initial=""
    bin=$(server_bin "$kind")
    want=$(readlink -f "$bin")
    cl_kind=$kind
    mdir=() cport=() pport=() wpid=() spid=()
    for i in 0 1 2; do
        cport[i]=$((port + 2 * i))
        pport[i]=$((port + 2 * i + 1))
        mdir[i]=$dir/m$i
        for p in "${cport[i]}" "${pport[i]}"; do
            ! port_busy "$p" || { echo "!! port $p is in use" >&2; return 1; }
        done
        initial+="${initial:+,}m$i=http://127.0.0.1:${pport[i]}"
    done
    cl_endpoints="127.0.0.1:${cport[0]},127.0.0.1:${cport[1]},127.0.0.1:${cport[2]}"
    local first=1
    for i in ${START_ORDER:-0 1 2}; do
        mkdir -p "${mdir[i]}"
        local curl=http://127.0.0.1:${cport[i]} purl=http://127.0.0.1:${pport[i]}
        local cmd=("$bin" --name "m$i" --data-dir "${mdir[i]}/data"
            --listen-client-urls "$curl" --advertise-client-urls "$curl"
            --listen-peer-urls "$purl" --initial-advertise-peer-urls "$purl"
            --initial-cluster "$initial" --initial-cluster-state new
            --initial-cluster-token "$token"
            --heartbeat-interval "$HEARTBEAT" --election-timeout "$ELECTION")
        # CLUSTER_PRELOAD: an LD_PRELOAD shim (scripts/lib/fsync-delay.c) whose delay each
        # member reads from its own file, so a caller can stall a running member.
        if [ -n "${CLUSTER_PRELOAD:-}" ]; then
            cmd=(env LD_PRELOAD="$CLUSTER_PRELOAD" FSYNC_DELAY_FILE="${mdir[i]}/fsync-delay-us" "${cmd[@]}")
        fi
        if [ "${delays[i]:-0}" -gt 0 ]; then
            cmd=(strace -f --seccomp-bpf -e trace=fsync,fdatasync
                -e inject=fsync,fdatasync:delay_exit="${delays[i]}" -o /dev/null "${cmd[@]}")
        fi
        /usr/bin/time -f %O -o "${mdir[i]}/oublock" "${cmd[@]}" >"${mdir[i]}/server.log" 2>&1 &
        wpid[i]=$!
        started+=("${wpid[i]}")
        spid[i]=
        for _ in $(seq 200); do
            spid[i]=$(find_server "${wpid[i]}" "$want") && break
            kill -0 "${wpid[i]}" 2>/dev/null || break
            sleep 0.05
        done
        if [ -z "${spid[i]}" ]; then
            tail -5 "${mdir[i]}/server.log" >&2
            echo "!! $kind m$i did not start" >&2
            return 1
        fi
        started+=("${spid[i]}")
        if [ $first = 1 ] && [ "${HEAD_START:-0}" != 0 ]; then sleep "$HEAD_START"; fi
        first=0
    done
}

# cluster_status: prints one line per member that answers, "I ID LEADER TERM INDEX" (IDs in
# hex as etcdctl prints them), from `etcdctl endpoint status -w simple` (no JSON: member IDs
# are 64-bit and jq would round them).
cluster_status() {
    local i line
    for i in 0 1 2; do
        line=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:${cport[i]}" --dial-timeout=1s \
            --command-timeout=1s endpoint status -w simple 2>/dev/null | head -1) || continue
        [ -n "$line" ] || continue
        # endpoint, ID, version, db size, is leader, is learner, raft term, raft index, ...
        awk -F', ' -v i="$i" '{print i, $2, ($5 == "true" ? "leader" : "-"), $7, $8}' <<<"$line"
    done
}

# cluster_leader: prints the index (0..2) of the member that says it is the leader, or fails.
cluster_leader() {
    cluster_status | awk '$3 == "leader" {print $1; found = 1; exit} END {exit !found}'
}

# cluster_wait_leader: waits until a leader serves a put through bramble-bench (so the
# cluster really takes writes) and sets $leader to its index.
cluster_wait_leader() {
    local deadline=$((SECONDS + START_TIMEOUT)) i
    leader=
    while :; do
        for i in 0 1 2; do
            if ! kill -0 "${spid[i]}" 2>/dev/null; then
                tail -5 "${mdir[i]}/server.log" >&2
                echo "!! $cl_kind m$i exited at start" >&2
                return 1
            fi
        done
        if leader=$(cluster_leader) &&
            "$BENCH_BIN" --endpoints "127.0.0.1:${cport[leader]}" --total 1 --dial-timeout 1 \
                --timeout 5 --json put --key-space 1 >/dev/null 2>&1; then
            return 0
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -5 "${mdir[@]/%//server.log}" >&2
            echo "!! $cl_kind: no leader after ${START_TIMEOUT}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# free_block PORT: prints the first port >= PORT (wrapping from BASE_PORT + 990 back to
# BASE_PORT) such that it and the next five are free. Other programs' outgoing connections
# take ephemeral ports (32768-60999 by default) in any range we pick, so this is checked for
# every cluster.
free_block() {
    local p=$1 k ok
    for _ in $(seq 200); do
        [ "$p" -le $((BASE_PORT + 990)) ] || p=$BASE_PORT
        ok=1
        for k in 0 1 2 3 4 5; do
            if port_busy $((p + k)) || ss -Htan "( sport = :$((p + k)) )" 2>/dev/null | grep -q .; then
                ok=0
                break
            fi
        done
        [ $ok = 0 ] || { echo "$p"; return 0; }
        p=$((p + 6))
    done
    die "no 6 free ports from $1"
}

# cluster_up KIND DIR TOKEN DELAYS: cluster_start (see there) + cluster_wait_leader on the
# ports from $port on, retried on new ports (3 attempts) if a member cannot bind or no leader
# comes; leaves $port at the block used.
cluster_up() {
    local attempt
    for attempt in 1 2 3; do
        port=$(free_block "$port")
        if cluster_start "$1" "$2/a$attempt" "$port" "$3" "$4" && cluster_wait_leader; then
            return 0
        fi
        cluster_stop
        port=$((port + 6))
    done
    die "$1: could not start a cluster in 3 attempts"
}

# cluster_stop: SIGTERM to the three servers at once (GNU time would not pass it on), waits
# for them and their wrappers, and sets fin_bytes[i] to member i's lifetime bytes written
# (ru_oublock * 512), empty if it had to be killed.
cluster_stop() {
    local i blocks
    fin_bytes=()
    for i in 0 1 2; do [ -z "${spid[i]:-}" ] || kill -TERM "${spid[i]}" 2>/dev/null || true; done
    for i in 0 1 2; do
        fin_bytes[i]=
        [ -n "${wpid[i]:-}" ] || continue
        for _ in $(seq 200); do kill -0 "${wpid[i]}" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "${wpid[i]}" 2>/dev/null; then
            echo "!! $cl_kind m$i (pid ${spid[i]:-}) did not stop within 10 s of SIGTERM; killing it" >&2
            kill -KILL "${spid[i]:-}" "${wpid[i]}" 2>/dev/null || true
        fi
        wait "${wpid[i]}" 2>/dev/null || true
        blocks=$(tail -1 "${mdir[i]}/oublock" 2>/dev/null || true)
        case $blocks in '' | *[!0-9]*) fin_bytes[i]= ;; *) fin_bytes[i]=$((blocks * 512)) ;; esac
    done
    # Nothing of this cluster is left to stop.
    local -a keep=()
    local p
    for p in "${started[@]}"; do kill -0 "$p" 2>/dev/null && keep+=("$p"); done
    started=("${keep[@]}")
}
