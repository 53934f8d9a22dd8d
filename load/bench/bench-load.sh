#!/usr/bin/env bash
# bench-load.sh: measures storm-load itself on bare kernel network namespaces
# (no VMs): 1 server + 3 clients, each in its own netns, joined by a bridge in
# a fifth netns. Ramps CONNS connections, holds, disconnects every client with
# SIGINT (FIN), and prints ramp rate, user-space memory per connection, kernel
# socket memory, drain time and a verdict. Run as root; touches nothing in the
# root namespace except global counters it reads.
#
# Env: CONNS (default 300000), ON_EXIT (fin|rst, default fin),
#      CONCURRENCY (connects in flight per client, default 1024).
set -euo pipefail

CONNS=${CONNS:-300000}
ON_EXIT=${ON_EXIT:-fin}
CONCURRENCY=${CONCURRENCY:-1024}
PORTS=20000-20019
NPORTS=20
NET=10.250.0
SERVER_IP=$NET.1
# Per-process fd budget: the host hard limit is 20000 and cannot be raised;
# leave headroom for the SO_REUSEPORT spread and listeners.
SERVER_PER_PROC=17000
CLIENT_PER_PROC=19000
# Kernel memory per connection with both ends on this host (two sockets,
# two files, epoll items), measured here at 6.2-6.5 KiB; refuse below 8.
KIB_PER_CONN=8
BASE_MIB=1024
# Bounds for every wait.
START_TIMEOUT=30
DRAIN_TIMEOUT=300
EXIT_TIMEOUT=120

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOAD=$(dirname "$HERE")
BIN=$LOAD/target/x86_64-unknown-linux-gnu/release/storm-load
NS_BR=nsbench-br
NS_SRV=nsbench-srv
NS_CLI=(nsbench-c1 nsbench-c2 nsbench-c3)
PIDS=()
WORK=

die() { echo "bench-load: $*" >&2; exit 1; }
log() { echo "bench-load: $*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Bounded wait for our own PIDs to go away (a 1M-socket exit takes seconds).
    local deadline=$((SECONDS + EXIT_TIMEOUT))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    for ns in "$NS_SRV" "${NS_CLI[@]}" "$NS_BR"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    local left
    left=$(ip netns list | awk '/^nsbench-/{print $1}')
    [[ -z $left ]] || echo "bench-load: WARNING: namespaces left behind: $left" >&2
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}

# json_field LINE KEY -> the integer or float value of "KEY":value
jf() { grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2; }

# wait_until SECONDS WHAT CMD...: polls CMD every 50 ms; fails after SECONDS.
# Also fails fast if the server died, since nothing can succeed then.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline
    deadline=$(($(date +%s%N) + limit * 1000000000))
    until "$@"; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "server (pid $SERVER_PID) died while waiting for $what; see $WORK/server.err"
        (($(date +%s%N) < deadline)) || die "timed out after ${limit}s waiting for $what"
        sleep 0.05
    done
}

# PIDs of a storm-load parent and its workers.
tree() { echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); }

# Sum of VmRSS (KiB) over a storm-load parent and its workers.
rss_kib() {
    local sum=0 p v
    for p in $(tree "$1"); do
        v=$(awk '/^VmRSS:/{print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# user and system CPU ticks of a storm-load parent and its workers: "U S"
cpu_ticks() {
    local u=0 s=0 p f
    for p in $(tree "$1"); do
        read -r -a f <"/proc/$p/stat" || continue
        u=$((u + f[13])) s=$((s + f[14]))
    done
    echo "$u $s"
}

# Whole-machine CPU ticks: "user+nice system irq+softirq idle+iowait"
sys_ticks() { awk '/^cpu /{print $2+$3, $4, $7+$8, $5+$6}' /proc/stat; }

mem_avail_kib() { awk '/^MemAvailable:/{print $2}' /proc/meminfo; }

last_line() { tail -n 1 "$1" 2>/dev/null || true; }

server_status() { cat "$WORK/server.status" 2>/dev/null || true; }

server_has() { # server_has KEY VALUE
    local l
    l=$(server_status)
    [[ -n $l && $(jf "$l" "$1") == "$2" ]]
}

line_of() { grep -m1 "\"kind\":\"$2\"" "$1" 2>/dev/null || true; }
has_line() { [[ -n $(line_of "$1" "$2") ]]; }

all_reached() {
    local i
    for i in 0 1 2; do has_line "$WORK/client$i.out" reached || return 1; done
}

all_gone() {
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done
    return 0
}

drained() { server_has established 0; }

# --- preflight --------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
[[ $CONNS =~ ^[0-9]+$ ]] && ((CONNS >= 3)) || die "CONNS must be a whole number >= 3, got '$CONNS'"
[[ $ON_EXIT == fin || $ON_EXIT == rst ]] || die "ON_EXIT must be fin or rst"
need_kib=$((CONNS * KIB_PER_CONN + BASE_MIB * 1024))
avail_kib=$(mem_avail_kib)
if ((need_kib > avail_kib)); then
    die "CONNS=$CONNS needs about $((need_kib / 1024)) MiB ($KIB_PER_CONN KiB per connection + $BASE_MIB MiB), only $((avail_kib / 1024)) MiB available; lower CONNS"
fi
per_client=$(((CONNS + 2) / 3))
if ((per_client > NPORTS * 64512)); then
    die "CONNS=$CONNS needs $per_client connections per client, above the $((NPORTS * 64512)) tuples of one source address"
fi
SERVER_PROCS=$(((CONNS + SERVER_PER_PROC - 1) / SERVER_PER_PROC))
((SERVER_PROCS >= 2)) || SERVER_PROCS=2
CLIENT_PROCS=$(((per_client + CLIENT_PER_PROC - 1) / CLIENT_PER_PROC))

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building storm-load (release, static)"
(cd "$LOAD" && cargo build --release --quiet) || die "cargo build failed"
file "$BIN" | grep -q 'statically linked' || die "$BIN is not statically linked"

WORK=$(mktemp -d /tmp/nsbench.XXXXXX)

# Leftovers of a killed earlier run carry our prefix.
for ns in $(ip netns list | awk '/^nsbench-/{print $1}'); do
    log "removing leftover namespace $ns"
    ip netns del "$ns"
done

# --- topology ---------------------------------------------------------------
ip netns add "$NS_BR"
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
ip -n "$NS_BR" link set lo up
# Keep host netfilter out of the measured path even where br_netfilter is loaded.
ip netns exec "$NS_BR" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 >"$f"; done; true'
i=0
for ns in "$NS_SRV" "${NS_CLI[@]}"; do
    ip netns add "$ns"
    if [[ $ns == "$NS_SRV" ]]; then addr=$SERVER_IP; else addr=$NET.$((11 + i)) i=$((i + 1)); fi
    ip -n "$NS_BR" link add "v-${ns#nsbench-}" type veth peer name eth0 netns "$ns"
    ip -n "$NS_BR" link set "v-${ns#nsbench-}" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -q -w \
        net.ipv4.ip_local_port_range="1024 65535" \
        net.core.somaxconn=65535 \
        net.ipv4.tcp_max_syn_backlog=65535
done

log "CONNS=$CONNS on_exit=$ON_EXIT server procs=$SERVER_PROCS, 3 clients x $CLIENT_PROCS procs, $per_client each"

# --- server -----------------------------------------------------------------
ip netns exec "$NS_SRV" "$BIN" server --ports "$PORTS" --procs "$SERVER_PROCS" --count "$CONNS" \
    --interval 100 --status-file "$WORK/server.status" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_until "$START_TIMEOUT" "server start" has_line "$WORK/server.out" start
wait_until "$START_TIMEOUT" "server status" test -s "$WORK/server.status"
server_rss0=$(rss_kib "$SERVER_PID")

# Calibration: a client holding one connection per worker gives the RSS a
# client of this shape has before it holds anything.
ip netns exec "${NS_CLI[0]}" "$BIN" client --target "$SERVER_IP:$PORTS" --count "$CLIENT_PROCS" \
    --procs "$CLIENT_PROCS" >"$WORK/calib.out" 2>"$WORK/calib.err" &
calib=$!
PIDS+=("$calib")
# It also proves the path through the bridge before the real ramp.
wait_until "$START_TIMEOUT" "calibration client" has_line "$WORK/calib.out" reached
[[ $(jf "$(line_of "$WORK/calib.out" reached)" established) == "$CLIENT_PROCS" ]] ||
    die "calibration client could not connect to $SERVER_IP: $(line_of "$WORK/calib.out" reached)"
client_rss0=$(rss_kib "$calib")
kill -INT "$calib"
wait_until "$EXIT_TIMEOUT" "calibration client exit" all_gone "$calib"
wait_until "$DRAIN_TIMEOUT" "server to drain the calibration connections" drained

# --- ramp -------------------------------------------------------------------
mem0=$(mem_avail_kib)
read -r su0 ss0 si0 sd0 < <(sys_ticks)
t0=$(date +%s.%N)
CLIENT_PIDS=()
for i in 0 1 2; do
    n=$(((CONNS - i + 2) / 3)) # shares add up to CONNS exactly
    ip netns exec "${NS_CLI[$i]}" "$BIN" client --target "$SERVER_IP:$PORTS" --count "$n" \
        --procs "$CLIENT_PROCS" --concurrency "$CONCURRENCY" --on-exit "$ON_EXIT" \
        --interval 250 >"$WORK/client$i.out" 2>"$WORK/client$i.err" &
    CLIENT_PIDS+=($!)
    PIDS+=($!)
done
ramp_limit=$((60 + CONNS / 1000))
wait_until "$ramp_limit" "all clients to finish their ramp" all_reached
read -r su1 ss1 si1 sd1 < <(sys_ticks)
t_reached=$(date +%s.%N)
cli_u=0 cli_s=0
for p in "${CLIENT_PIDS[@]}"; do
    read -r u s < <(cpu_ticks "$p")
    cli_u=$((cli_u + u)) cli_s=$((cli_s + s))
done
read -r srv_u srv_s < <(cpu_ticks "$SERVER_PID")
wait_until 60 "server to count $CONNS established" server_has established "$CONNS"

# --- hold: peak figures -------------------------------------------------------
established_cli=0 failed_cli=0 ramp_max=0
for i in 0 1 2; do
    r=$(line_of "$WORK/client$i.out" reached)
    established_cli=$((established_cli + $(jf "$r" established)))
    failed_cli=$((failed_cli + $(jf "$r" failed)))
    ramp_max=$(awk -v a="$ramp_max" -v b="$(jf "$r" elapsed)" 'BEGIN{print (b>a)?b:a}')
done
server_rss1=$(rss_kib "$SERVER_PID")
client_rss1=0
for p in "${CLIENT_PIDS[@]}"; do client_rss1=$((client_rss1 + $(rss_kib "$p"))); done
mem1=$(mem_avail_kib)
sockstat=$(ip netns exec "$NS_SRV" grep '^TCP:' /proc/net/sockstat)
tcp_mem_pages=$(awk '{for(i=1;i<NF;i++) if($i=="mem") print $(i+1)}' <<<"$sockstat")
conntrack=$(ip netns exec "$NS_SRV" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo -)

# --- disconnect -------------------------------------------------------------
read -r srv_u1 srv_s1 < <(cpu_ticks "$SERVER_PID")
t_sig=$(date +%s.%N)
# The clients were backgrounded by this non-interactive shell, so SIGINT starts
# out ignored for them: this also proves storm-load installs its own handler.
kill -INT "${CLIENT_PIDS[@]}"
wait_until "$DRAIN_TIMEOUT" "server established to reach 0" drained
drain_line=$(server_status)
read -r srv_u2 srv_s2 < <(cpu_ticks "$SERVER_PID")
wait_until "$EXIT_TIMEOUT" "clients to exit" all_gone "${CLIENT_PIDS[@]}"
t_gone=$(date +%s.%N)
kill -TERM "$SERVER_PID"
wait_until "$EXIT_TIMEOUT" "server summary" has_line "$WORK/server.out" summary
summary=$(line_of "$WORK/server.out" summary)
cli_exit_sigs=$(cat "$WORK"/client{0,1,2}.out | grep -c '"kind":"signal"' || true)

# --- report -----------------------------------------------------------------
calc() { awk "BEGIN{printf \"$1\", $2}"; }
ramp_wall=$(calc %.3f "$t_reached - $t0")
hz=$(getconf CLK_TCK)
load_user=$((cli_u + srv_u))
load_sys=$((cli_s + srv_s))
accepted=$(jf "$summary" accepted)
closed=$(jf "$summary" closed)
server_b=$(calc %.1f "($server_rss1 - $server_rss0) * 1024 / $CONNS")
client_b=$(calc %.1f "($client_rss1 - 3 * $client_rss0) * 1024 / $CONNS")
kernel_kib=$(calc %.2f "($mem0 - $mem1) / $CONNS")
drain_s=$(calc %.3f "$(jf "$drain_line" t) - $t_sig")
# Share of storm-load's own CPU spent in user space; the rest is syscalls
# (socket, connect, accept, epoll, close) executing in the kernel. Whole-
# machine counters are shown too, but other tenants of the host pollute them.
load_total=$((load_user + load_sys))
user_pct=$(calc %.1f "(($load_total > 0) ? 100 * $load_user / $load_total : 100)")

echo "== storm-load bench: CONNS=$CONNS, 1 server ($SERVER_PROCS procs) + 3 clients ($CLIENT_PROCS procs each), netns bridge, on_exit=$ON_EXIT, $(nproc) CPUs, kernel $(uname -r)"
echo "ramp: established $established_cli/$CONNS (failed $failed_cli) in ${ramp_max}s (slowest client; wall to last reached ${ramp_wall}s)"
echo "ramp rate: $(calc %.0f "$CONNS / $ramp_max") connections/s"
echo "ramp CPU (whole machine, ticks at ${hz}Hz): user $((su1 - su0)), system $((ss1 - ss0)), irq+softirq $((si1 - si0)), idle $((sd1 - sd0))"
echo "ramp CPU of storm-load: server user $srv_u system $srv_s, clients user $cli_u system $cli_s ticks; user = ${user_pct}% of storm-load's CPU"
echo "user-space RSS per connection: server ${server_b} B (${server_rss0} -> ${server_rss1} KiB), clients ${client_b} B (3x${client_rss0} -> ${client_rss1} KiB)"
echo "kernel memory per connection (MemAvailable drop, both ends on this host): ${kernel_kib} KiB"
echo "sockstat at peak (server netns): $sockstat"
echo "TCP mem pages at peak: $tcp_mem_pages ($(calc %.1f "$tcp_mem_pages * 4 / 1024") MiB); server netns conntrack entries: $conntrack"
echo "disconnect: SIGINT to 3 clients ($cli_exit_sigs signal lines), server established 0 after ${drain_s}s; clients gone after $(calc %.3f "$t_gone - $t_sig")s (checked after the drain)"
echo "drain CPU of the server: user $((srv_u2 - srv_u1)), system $((srv_s2 - srv_s1)) ticks"
echo "teardown (accepted includes $CLIENT_PROCS calibration connections): server accepted $accepted, closed $closed, summary: $summary"

v_kernel=FAIL v_mem=FAIL v_tear=FAIL v_reach=FAIL
awk "BEGIN{exit !($user_pct < 10)}" && v_kernel=PASS
awk "BEGIN{exit !($server_b <= 64)}" && v_mem=PASS
[[ -n $accepted && $accepted == "$closed" && $(jf "$summary" established) == 0 ]] && v_tear=PASS
((established_cli == CONNS)) && v_reach=PASS
echo "VERDICT: reached=$v_reach kernel_bound=$v_kernel (storm-load user ${user_pct}% of its CPU < 10%) server_bytes_per_conn=$v_mem (${server_b} <= 64) teardown_exact=$v_tear (closed $closed == accepted $accepted)"
[[ $v_kernel$v_mem$v_tear$v_reach == PASSPASSPASSPASS ]]
