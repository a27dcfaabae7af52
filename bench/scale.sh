#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/scale.sh: how idmd behaves as its store grows (docs/performance.md "Scale"). For each
# store size it builds a store with idm-bulkload (through idmd's store API, as registerCustomer
# writes customers, sessions included and then swept), then starts idmd on it and measures:
# start-up time (exec to READY=1 and to the first answer, page cache warm and with data.mdb
# dropped from it), login and getCustomer latency with idm-bench load at low concurrency, idmd's
# CPU per request, and its idle memory (VmRSS, RssAnon, RssFile). Prints a table and writes CSV
# rows "scenario,store_size,metric,value" to OUT/scale.csv, for bench/run.sh to plot against the
# store size.
#
# Both the stores and idmd use a cheap Argon2id cost (t=1, m=8 KiB): login's hash would otherwise
# be nearly all of its latency and hide what the store does. Each store lives below a temporary
# directory (in --tmpdir) and is deleted after its size is measured. Everything it starts it stops.
set -euo pipefail

usage() {
        cat <<EOF
Usage: bench/scale.sh [OPTIONS]

  --sizes LIST       Store sizes in customers, comma-separated (default 1000,100000,1000000)
  --out DIR          Where scale.csv goes (default bench/results/; created)
  --duration S       Measurement window of each load, after a 1 s warm-up (default 3)
  --connections LIST Connections of the loads, comma-separated (default 1,8)
  --build-dir DIR    Build directory (default build-bench, configured with -Dbench=true)
  --no-build         Do not build: use \$IDMD, \$IDM_BENCH, \$IDM_BULKLOAD or the build directory's
  --tmpdir DIR       Parent of the temporary directory holding the stores (default \$TMPDIR or /tmp)
  --no-sessions      Load customers without their registration sessions (faster, smaller file)
  --keep DIR         Move each store to DIR/state-N after measuring it instead of deleting it
  -h, --help         This help
EOF
}

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
sizes="1000,100000,1000000"
out="$here/results"
duration=3
warmup=1
conns="1,8"
build_dir="$src/build-bench"
build=1
tmp_parent="${TMPDIR:-/tmp}"
sessions=(--sessions --expire)
keep=""

while [ $# -gt 0 ]; do
        case "$1" in
        --sizes) sizes="$2"; shift ;;
        --out) out="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --connections) conns="$2"; shift ;;
        --build-dir) build_dir="$2"; shift ;;
        --no-build) build=0 ;;
        --tmpdir) tmp_parent="$2"; shift ;;
        --no-sessions) sessions=() ;;
        --keep) keep="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "Unknown option: $1" >&2; usage >&2; exit 1 ;;
        esac
        shift
done

if [ "$build" = 1 ]; then
        if [ ! -d "$build_dir" ]; then
                meson setup "$build_dir" -Dbench=true -Dwerror=true >/dev/null
        else
                meson configure "$build_dir" -Dbench=true >/dev/null
        fi
        ninja -C "$build_dir" idmd/idmd bench/idm-bench bench/idm-bulkload >/dev/null
fi
IDMD="${IDMD:-$build_dir/idmd/idmd}"
IDM_BENCH="${IDM_BENCH:-$build_dir/bench/idm-bench}"
IDM_BULKLOAD="${IDM_BULKLOAD:-$build_dir/bench/idm-bulkload}"
command -v python3 >/dev/null || { echo "bench/scale.sh needs python3" >&2; exit 1; }

# jget PATH <JSON: the value at a dotted path, "null" if missing.
jget() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].lstrip(".").split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("null" if v is None else v)' "$1"; }

mkdir -p "$out"
csv="$out/scale.csv"
echo "scenario,store_size,metric,value" >"$csv"
row() { echo "$1,$2,$3,$4" >>"$csv"; }

tmp="$(mktemp -d "$tmp_parent/idm-scale-XXXXXX")"
idmd_pid=""
cleanup() {
        if [ -n "$idmd_pid" ] && kill -0 "$idmd_pid" 2>/dev/null; then
                kill -TERM "$idmd_pid" 2>/dev/null || true
                for _ in $(seq 100); do kill -0 "$idmd_pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$idmd_pid" 2>/dev/null || true
        fi
        idmd_pid=""
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The production configuration except: the cheap Argon2id cost the stores are built with, rate
# limits that never refuse the benchmark, a map that may grow to the 1,000,000-customer store's
# file, and this user's primary group as the admin group.
cat >"$tmp/idmd.conf" <<EOF
[daemon]
admin_group = $(id -gn)

[passwords]
argon2_opslimit = 1
argon2_memlimit = 8K

[store]
map_size_max = 16G

[ratelimit.default]
rate = 100000
burst = 100000
concurrency = 10000

[ratelimit.login]
rate = 100000
burst = 100000
concurrency = 10000

[ratelimit.registration]
rate = 100000
burst = 100000
concurrency = 10000
EOF

# Starts idmd on state directory $1 and waits for it: prints "pid ready_ms answer_ms", the time
# from exec to its READY=1 (sd_notify, on a socket of our own) and to its first answer to
# getServerInfo on the socket, each in ms.
start_idmd() {
        python3 - "$IDMD" "$tmp/idmd.conf" "$1" "$tmp/socket" "$tmp/idmd.log" <<'EOF'
import json, os, socket, subprocess, sys, time
idmd, conf, state, sock, log = sys.argv[1:]
notify = os.path.join(os.path.dirname(sock), "notify")
for p in (sock, notify):
    try: os.unlink(p)
    except FileNotFoundError: pass
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.bind(notify)
env = dict(os.environ, NOTIFY_SOCKET=notify)
out = open(log, "ab")
t0 = time.monotonic()
p = subprocess.Popen([idmd, "--config", conf, "--state-dir", state, "--socket", sock],
                     stdout=out, stderr=out, env=env, start_new_session=True)
ready = answer = None
n.settimeout(60)
while ready is None:
    if b"READY=1" in n.recv(4096):
        ready = time.monotonic()
deadline = time.monotonic() + 60
while answer is None and time.monotonic() < deadline:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(sock)
        c.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            b = c.recv(65536)
            if not b: break
            buf += b
        if b'"result"' in buf:
            answer = time.monotonic()
    except OSError:
        time.sleep(0.0005)
    finally:
        c.close()
if answer is None:
    sys.exit("idmd did not answer")
print(p.pid, round((ready - t0) * 1000, 1), round((answer - t0) * 1000, 1))
EOF
}

stop_idmd() {
        local pid="$idmd_pid"
        kill -TERM "$pid"
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        idmd_pid=""
}

# Drops data.mdb from the page cache (only that file), for a cold start.
drop_cache() {
        python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$1/data.mdb"
}

# Runs idm-bench load; the JSON line goes to $tmp/last.json, the human line to stderr.
load() {
        "$IDM_BENCH" load --socket "$tmp/socket" --pid "$idmd_pid" --duration "$duration" --warmup "$warmup" \
                --threads 1 "$@" >"$tmp/last.json" 2>"$tmp/last.txt" || {
                cat "$tmp/last.txt" >&2
                echo "idm-bench load $* failed" >&2
                exit 1
        }
        sed 's/^/    /' "$tmp/last.txt" >&2
        if [ "$(jget .errors <"$tmp/last.json")" != 0 ]; then
                echo "    SUSPICIOUS: errors $(jget .errors_by_code <"$tmp/last.json")" >&2
        fi
}

declare -A table
IFS=, read -ra size_list <<<"$sizes"
IFS=, read -ra conn_list <<<"$conns"

for n in "${size_list[@]}"; do
        state="$tmp/state-$n"
        # With sessions, the file holds about 5 KB per customer before the sweep frees them.
        need_kib=$(( n * 6 ))
        avail_kib=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
        if [ "$avail_kib" -lt "$need_kib" ]; then
                echo "Not enough space in $tmp for $n customers: $avail_kib KiB free, about $need_kib KiB needed" >&2
                exit 1
        fi
        echo "== $n customers" >&2
        "$IDM_BULKLOAD" --dir "$state" --customers "$n" "${sessions[@]}" >"$tmp/load.json"
        pid=$(jget .publisherId <"$tmp/load.json")
        ptoken=$(jget .publisherToken <"$tmp/load.json")
        cid=$(jget .customerId <"$tmp/load.json")
        bpc=$(jget .bytes_per_customer <"$tmp/load.json")
        row store "$n" bytes_per_customer "$bpc"
        row store "$n" used_bytes "$(jget .used_bytes <"$tmp/load.json")"
        row store "$n" file_bytes "$(jget .file_bytes <"$tmp/load.json")"
        row store "$n" load_s "$(jget .load_seconds <"$tmp/load.json")"
        python3 -c 'import json, sys
d = json.load(sys.stdin)
for name, t in sorted(d["tables"].items()):
    pages = t["branch_pages"] + t["leaf_pages"] + t["overflow_pages"]
    used = t["key_bytes"] + t["value_bytes"] + 10 * t["entries"]
    print("  %-26s %9d entries, %7d pages (%d overflow), depth %d, value %6.1f B, key %5.1f B, fill %3.0f%%" % (
        name, t["entries"], pages, t["overflow_pages"], t["depth"], t["value_bytes"] / t["entries"],
        t["key_bytes"] / t["entries"], 100.0 * used / (pages * d["page_size"])))' <"$tmp/load.json" >&2
        echo "  $bpc bytes per customer, load $(jget .load_seconds <"$tmp/load.json") s" >&2

        # Start-up: warm (the page cache holds the store), then with data.mdb dropped from it.
        read -r idmd_pid ready_ms answer_ms < <(start_idmd "$state")
        stop_idmd
        drop_cache "$state"
        read -r idmd_pid cold_ready_ms cold_answer_ms < <(start_idmd "$state")
        echo "  start-up: READY after $ready_ms ms, first answer after $answer_ms ms (cold: $cold_ready_ms, $cold_answer_ms)" >&2
        row startup "$n" ready_ms "$ready_ms"
        row startup "$n" answer_ms "$answer_ms"
        row startup "$n" cold_ready_ms "$cold_ready_ms"
        row startup "$n" cold_answer_ms "$cold_answer_ms"
        table[$n,startup]="$answer_ms"

        # Memory right after start-up, before any request but the probe.
        sleep 1.5
        read -r rss anon file < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
                END { print r, a, f }' "/proc/$idmd_pid/status")
        row rss-start "$n" vmrss_kib "$rss"
        row rss-start "$n" rss_anon_kib "$anon"
        row rss-start "$n" rss_file_kib "$file"
        echo "  after start-up: VmRSS $rss KiB (RssAnon $anon, RssFile $file)" >&2

        for c in "${conn_list[@]}"; do
                load --method login --publisher-id "$pid" --connections "$c"
                for m in p50 p99; do
                        v=$(jget .latency_us.$m <"$tmp/last.json")
                        row "login-c$c" "$n" "${m}_us" "$v"
                        table[$n,login-c$c-$m]="$v"
                done
                row "login-c$c" "$n" cpu_us_per_req "$(jget .server.cpu_us_per_req <"$tmp/last.json")"
                load --method getCustomer --connections "$c" \
                        --params "{\"publisherToken\":\"$ptoken\",\"customerId\":\"$cid\"}"
                for m in p50 p99; do
                        v=$(jget .latency_us.$m <"$tmp/last.json")
                        row "getCustomer-c$c" "$n" "${m}_us" "$v"
                        table[$n,getCustomer-c$c-$m]="$v"
                done
                row "getCustomer-c$c" "$n" cpu_us_per_req "$(jget .server.cpu_us_per_req <"$tmp/last.json")"
        done

        # Idle memory: after the loads, once the hash workers have let their memory go.
        sleep 3
        read -r rss anon file < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
                END { print r, a, f }' "/proc/$idmd_pid/status")
        row rss "$n" vmrss_kib "$rss"
        row rss "$n" rss_anon_kib "$anon"
        row rss "$n" rss_file_kib "$file"
        echo "  idle: VmRSS $rss KiB (RssAnon $anon, RssFile $file)" >&2
        table[$n,bpc]="$bpc"
        table[$n,rss]="$rss/$anon/$file"
        stop_idmd
        if [ -n "$keep" ]; then
                mkdir -p "$keep"
                rm -rf "${keep:?}/state-$n"
                mv "$state" "$keep/state-$n"
                echo "  kept in $keep/state-$n" >&2
        else
                rm -rf "$state"
        fi
done

printf '\n%-10s %10s %10s' "customers" "B/customer" "start ms"
for c in "${conn_list[@]}"; do printf ' %17s %17s' "login c=$c p50/99" "getCust c=$c p50/99"; done
printf ' %s\n' "idle RSS/anon/file KiB"
for n in "${size_list[@]}"; do
        printf '%-10s %10.0f %10s' "$n" "${table[$n,bpc]}" "${table[$n,startup]}"
        for c in "${conn_list[@]}"; do
                printf ' %17s %17s' "${table[$n,login-c$c-p50]}/${table[$n,login-c$c-p99]}" \
                        "${table[$n,getCustomer-c$c-p50]}/${table[$n,getCustomer-c$c-p99]}"
        done
        printf ' %s\n' "${table[$n,rss]}"
done
echo "(latencies in µs; CSV rows in $csv)"
