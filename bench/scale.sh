#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/scale.sh: how idmd behaves as its store grows (docs/performance.md "Scale"). It first
# builds a store of each size with idm-bulkload (through idmd's store API, as registerCustomer
# writes customers, sessions included and then swept), then, in rounds that take the sizes in
# turn (so that the machine's drift hits every size alike), starts idmd on each and measures:
# start-up time (exec to READY=1 and to the first answer, page cache warm and with data.mdb
# dropped from it), login and getCustomer latency with idm-bench load at low concurrency, idmd's
# CPU per request, and its memory after start-up and idle after the loads (VmRSS, RssAnon,
# RssFile). Prints a table of the medians over the rounds and writes them as CSV rows
# "scenario,store_size,metric,value" to OUT/scale.csv, for bench/run.sh to plot against the store
# size.
#
# Both the stores and idmd use a cheap Argon2id cost (t=1, m=8 KiB): login's hash would otherwise
# be nearly all of its latency and hide what the store does. The stores live below a temporary
# directory (in --tmpdir) and are deleted at the end. Everything it starts it stops.
set -euo pipefail

usage() {
        cat <<EOF
Usage: bench/scale.sh [OPTIONS]

  --sizes LIST       Store sizes in customers, comma-separated (default 1000,100000,1000000)
  --out DIR          Where scale.csv goes (default bench/results/; created)
  --duration S       Measurement window of each load, after a 1 s warm-up (default 3)
  --rounds N         Rounds of measurements; the table and CSV give the medians (default 3)
  --connections LIST Connections of the loads, comma-separated (default 1,8)
  --build-dir DIR    Build directory (default build-bench, configured with -Dbench=true)
  --no-build         Do not build: use \$IDMD, \$IDM_BENCH, \$IDM_BULKLOAD or the build directory's
  --tmpdir DIR       Parent of the temporary directory holding the stores (default \$TMPDIR or /tmp)
  --no-sessions      Load customers without their registration sessions (faster, smaller file)
  --keep DIR         Move the stores to DIR/state-N at the end instead of deleting them
  -h, --help         This help
EOF
}

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
sizes="1000,100000,1000000"
out="$here/results"
duration=3
rounds=3
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
        --rounds) rounds="$2"; shift ;;
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

# Every figure of every round goes to $tmp/rounds as "scenario store_size metric value" (the
# store's own figures once); at the end the median of each goes to the CSV.
row() { echo "$1 $2 $3 $4" >>"$tmp/rounds"; }

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

IFS=, read -ra size_list <<<"$sizes"
IFS=, read -ra conn_list <<<"$conns"

# Memory of idmd now: "VmRSS RssAnon RssFile" in KiB.
memory() {
        awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print r, a, f }' \
                "/proc/$idmd_pid/status"
}

# ---- the stores ----
declare -A pub token customer
for n in "${size_list[@]}"; do
        state="$tmp/state-$n"
        # With sessions, data.mdb reaches about 3 KB per customer before the sweep frees them.
        need_kib=$(( n * 4 ))
        avail_kib=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
        if [ "$avail_kib" -lt "$need_kib" ]; then
                echo "Not enough space in $tmp for $n customers: $avail_kib KiB free, about $need_kib KiB needed" >&2
                exit 1
        fi
        echo "== building a store of $n customers" >&2
        "$IDM_BULKLOAD" --dir "$state" --customers "$n" "${sessions[@]}" >"$tmp/load-$n.json"
        pub[$n]=$(jget .publisherId <"$tmp/load-$n.json")
        token[$n]=$(jget .publisherToken <"$tmp/load-$n.json")
        customer[$n]=$(jget .customerId <"$tmp/load-$n.json")
        row store "$n" bytes_per_customer "$(jget .bytes_per_customer <"$tmp/load-$n.json")"
        row store "$n" used_bytes "$(jget .used_bytes <"$tmp/load-$n.json")"
        row store "$n" file_bytes "$(jget .file_bytes <"$tmp/load-$n.json")"
        row store "$n" load_s "$(jget .load_seconds <"$tmp/load-$n.json")"
        python3 -c 'import json, sys
d = json.load(sys.stdin)
for name, t in sorted(d["tables"].items()):
    pages = t["branch_pages"] + t["leaf_pages"] + t["overflow_pages"]
    used = t["key_bytes"] + t["value_bytes"] + 10 * t["entries"]
    print("  %-26s %9d entries, %7d pages (%d overflow), depth %d, value %6.1f B, key %5.1f B, fill %3.0f%%" % (
        name, t["entries"], pages, t["overflow_pages"], t["depth"], t["value_bytes"] / t["entries"],
        t["key_bytes"] / t["entries"], 100.0 * used / (pages * d["page_size"])))
print("  %.0f bytes per customer (%d pages in use), data.mdb %d bytes, loaded in %.1f s" % (
    d["bytes_per_customer"], d["used_bytes"] / d["page_size"], d["file_bytes"], d["load_seconds"]))' \
                <"$tmp/load-$n.json" >&2
done

# ---- the rounds ----
for round in $(seq "$rounds"); do
        for n in "${size_list[@]}"; do
                state="$tmp/state-$n"
                echo "== round $round, $n customers" >&2
                # Start-up: cold (data.mdb dropped from the page cache), then warm.
                drop_cache "$state"
                read -r idmd_pid cold_ready_ms cold_answer_ms < <(start_idmd "$state")
                stop_idmd
                read -r idmd_pid ready_ms answer_ms < <(start_idmd "$state")
                echo "  start-up: READY after $ready_ms ms, first answer after $answer_ms ms" \
                     "(cold: $cold_ready_ms, $cold_answer_ms)" >&2
                row startup "$n" ready_ms "$ready_ms"
                row startup "$n" answer_ms "$answer_ms"
                row startup "$n" cold_ready_ms "$cold_ready_ms"
                row startup "$n" cold_answer_ms "$cold_answer_ms"

                # Memory right after start-up, before any request but the probe.
                sleep 1.5
                read -r rss0 anon0 file0 < <(memory)
                row rss-start "$n" vmrss_kib "$rss0"
                row rss-start "$n" rss_anon_kib "$anon0"
                row rss-start "$n" rss_file_kib "$file0"

                for c in "${conn_list[@]}"; do
                        load --method login --publisher-id "${pub[$n]}" --connections "$c"
                        for m in p50 p99; do
                                row "login-c$c" "$n" "${m}_us" "$(jget .latency_us.$m <"$tmp/last.json")"
                        done
                        row "login-c$c" "$n" cpu_us_per_req "$(jget .server.cpu_us_per_req <"$tmp/last.json")"
                        load --method getCustomer --connections "$c" \
                                --params "{\"publisherToken\":\"${token[$n]}\",\"customerId\":\"${customer[$n]}\"}"
                        for m in p50 p99; do
                                row "getCustomer-c$c" "$n" "${m}_us" "$(jget .latency_us.$m <"$tmp/last.json")"
                        done
                        row "getCustomer-c$c" "$n" cpu_us_per_req "$(jget .server.cpu_us_per_req <"$tmp/last.json")"
                done

                # Idle memory: after the loads, once the hash workers have let their memory go.
                sleep 3
                read -r rss anon file < <(memory)
                row rss "$n" vmrss_kib "$rss"
                row rss "$n" rss_anon_kib "$anon"
                row rss "$n" rss_file_kib "$file"
                echo "  memory (VmRSS/RssAnon/RssFile KiB): after start-up $rss0/$anon0/$file0," \
                     "idle after the loads $rss/$anon/$file" >&2
                stop_idmd
        done
done

if [ -n "$keep" ]; then
        mkdir -p "$keep"
        for n in "${size_list[@]}"; do
                rm -rf "${keep:?}/state-$n"
                mv "$tmp/state-$n" "$keep/state-$n"
        done
        echo "Stores kept in $keep" >&2
fi

# ---- medians: the CSV and the table ----
python3 - "$tmp/rounds" "$csv" "$sizes" "$conns" <<'EOF'
import statistics, sys
rounds, csv, sizes, conns = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
values = {}
for line in open(rounds):
    scenario, size, metric, value = line.split()
    try:
        values.setdefault((scenario, size, metric), []).append(float(value))
    except ValueError:
        pass
med = {k: statistics.median(v) for k, v in values.items()}
with open(csv, "a") as f:
    for (scenario, size, metric), v in med.items():
        f.write("%s,%s,%s,%s\n" % (scenario, size, metric, "%d" % v if v == int(v) else "%.1f" % v))
def g(*k):
    v = med.get(k)
    return "-" if v is None else "%.0f" % v
head = "\n%-9s %6s %8s" % ("customers", "B/cust", "start ms")
for c in conns:
    head += " %19s %19s" % ("login c=%s p50/p99" % c, "getCust c=%s p50/99" % c)
print(head + "  idle RSS/anon/file KiB")
for n in sizes:
    line = "%-9s %6s %8s" % (n, g("store", n, "bytes_per_customer"), g("startup", n, "answer_ms"))
    for c in conns:
        line += " %19s %19s" % (g("login-c" + c, n, "p50_us") + "/" + g("login-c" + c, n, "p99_us"),
                                g("getCustomer-c" + c, n, "p50_us") + "/" + g("getCustomer-c" + c, n, "p99_us"))
    print(line + "  %s/%s/%s" % (g("rss", n, "vmrss_kib"), g("rss", n, "rss_anon_kib"), g("rss", n, "rss_file_kib")))
print()
for n in sizes:
    print("%-9s idmd CPU per request (µs): %s; cold start %s ms; RSS after start-up %s/%s/%s KiB" % (
        n, ", ".join("%s c=%s %s" % (m, c, g(m + "-c" + c, n, "cpu_us_per_req"))
                     for m in ("login", "getCustomer") for c in conns),
        g("startup", n, "cold_answer_ms"),
        g("rss-start", n, "vmrss_kib"), g("rss-start", n, "rss_anon_kib"), g("rss-start", n, "rss_file_kib")))
EOF
echo "(medians of $rounds rounds; latencies in µs; CSV rows in $csv)"
