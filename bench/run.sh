#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh: idmd's benchmark run (docs/performance.md). Builds idm-bench and idmd into
# build-bench/ (-Dbench=true), then for each scenario starts a fresh idmd on a temporary state
# directory and socket, loads it with idm-bench, stops it, and measures the floor the scenario is
# compared with in the same run (echo round trip, durable LMDB commit, bare Argon2id verify).
# Prints a table of throughput, latency, floor, ratio and the group-commit targets.
#
# Everything it starts it stops (trap), and it writes only below its temporary directory (in
# $TMPDIR or /tmp) and the build directory: never /etc, /run or /var.
set -euo pipefail

usage() {
        cat <<EOF
Usage: bench/run.sh [OPTIONS]

  --quick            Smoke run: one round, 1 s windows (about 25 s)
  --runs N           Rounds; the table shows the median of each figure (default 3)
  --duration S       Measurement window per scenario, after a 1 s warm-up (default 4)
  --connections N    Connections of the load scenarios (default 32)
  --threads T        Client threads (default 2)
  --build-dir DIR    Build directory (default build-bench, configured with -Dbench=true -Dwerror=true)
  --no-build         Do not build: use \$IDMD and \$IDM_BENCH, or the build directory's binaries
  --tmpdir DIR       Parent of the temporary directory: the state directory and the LMDB floor
                     live there, so it decides the disk being measured (default \$TMPDIR or /tmp)
  --json FILE        Also write every idm-bench JSON line to FILE
  --nice N           Run idmd and idm-bench at this niceness (default 0; negative needs root).
                     On a machine busy with other work, -10 steadies the figures a lot (see
                     docs/performance.md), at the cost of slowing everything else down.
                     Compare runs only at the same setting.
  --profile          After the rounds, one more refreshToken run under perf record (and one under
                     strace -c) and print where idmd's time goes
  -h, --help         This help

Environment: IDMD (an idmd binary to measure instead of the build directory's; then only
idm-bench is built), IDM_BENCH (an idm-bench binary, with --no-build).
EOF
}

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
runs=3
duration=4
warmup=1
connections=32
threads=2
build_dir="$src/build-bench"
build=1
tmp_parent="${TMPDIR:-/tmp}"
json_out=""
profile=0
quick=0
niceness=0

while [ $# -gt 0 ]; do
        case "$1" in
        --quick) quick=1; runs=1; duration=1; warmup=0.3 ;;
        --runs) runs="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --connections) connections="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        --build-dir) build_dir="$2"; shift ;;
        --no-build) build=0 ;;
        --tmpdir) tmp_parent="$2"; shift ;;
        --json) json_out="$2"; shift ;;
        --profile) profile=1 ;;
        --nice) niceness="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "Unknown option '$1'." >&2; usage >&2; exit 2 ;;
        esac
        shift
done

# ---- binaries ----

if [ "$build" = 1 ]; then
        if [ ! -f "$build_dir/build.ninja" ]; then
                meson setup "$build_dir" "$src" -Dbench=true -Dwerror=true >/dev/null
        elif ! grep -q -- "-Dbench=true" "$build_dir/meson-logs/meson-log.txt" 2>/dev/null; then
                meson configure "$build_dir" -Dbench=true >/dev/null
        fi
        targets=(bench/idm-bench)
        [ -n "${IDMD:-}" ] || targets+=(idmd/idmd)
        ninja -C "$build_dir" "${targets[@]}" >/dev/null
fi
IDMD="${IDMD:-$build_dir/idmd/idmd}"
IDM_BENCH="${IDM_BENCH:-$build_dir/bench/idm-bench}"
for b in "$IDMD" "$IDM_BENCH"; do
        [ -x "$b" ] || { echo "Missing binary $b (build it, or set IDMD / IDM_BENCH)." >&2; exit 1; }
done
run_nice=()
[ "$niceness" = 0 ] || run_nice=(nice -n "$niceness")

if command -v jq >/dev/null; then
        jget() { jq -r "$1"; }
elif command -v python3 >/dev/null; then
        # Only the simple paths used below: .a.b.c
        jget() { python3 -c 'import json, sys
v = json.loads(sys.stdin.readline())
for k in sys.argv[1].lstrip(".").split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("null" if v is None else v)' "$1"; }
else
        echo "bench/run.sh needs jq or python3 to read idm-bench's JSON." >&2
        exit 1
fi

# ---- temporary directory, idmd, cleanup ----

tmp="$(mktemp -d "$tmp_parent/idm-bench-XXXXXX")"
idmd_pid=""
cleanup() {
        if [ -n "${count_pid:-}" ]; then
                kill -INT "$count_pid" 2>/dev/null || true
                wait "$count_pid" 2>/dev/null || true
        fi
        if [ -n "$idmd_pid" ] && kill -0 "$idmd_pid" 2>/dev/null; then
                kill -TERM "$idmd_pid" 2>/dev/null || true
                for _ in $(seq 100); do kill -0 "$idmd_pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$idmd_pid" 2>/dev/null || true
                wait "$idmd_pid" 2>/dev/null || true
        fi
        idmd_pid=""
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The production configuration (embedded defaults: Argon2id opslimit 2, memlimit 19 MiB, 2 hash
# workers, synchronous LMDB) except: rate limits that never refuse the benchmark (the keys of
# tests/integration/idmtest.py generous_rate_limits), and this user's primary group as the admin
# group, so that createPublisher works without root.
cat >"$tmp/idmd.conf" <<EOF
[daemon]
admin_group = $(id -gn)

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

[ratelimit.password_reset]
rate = 100000
burst = 100000
concurrency = 10000
EOF

n_idmd=0
start_idmd() {
        n_idmd=$((n_idmd + 1))
        local d="$tmp/idmd-$n_idmd"
        mkdir -p "$d"
        socket="$d/socket"
        "${run_nice[@]}" "$IDMD" --config "$tmp/idmd.conf" --state-dir "$d/state" --socket "$socket" >"$d/log" 2>&1 &
        idmd_pid=$!
        if ! "$IDM_BENCH" probe --socket "$socket" --wait 30 >"$d/probe.json" 2>/dev/null; then
                echo "idmd did not start:" >&2
                cat "$d/log" >&2
                exit 1
        fi
}

stop_idmd() {
        local pid="$idmd_pid" rc=0
        kill -TERM "$pid"
        wait "$pid" || rc=$?
        idmd_pid=""
        if [ "$rc" != 0 ]; then
                echo "idmd exited with $rc:" >&2
                cat "$tmp/idmd-$n_idmd/log" >&2
                exit 1
        fi
        rm -rf "$tmp/idmd-$n_idmd/state"
}

# Runs idm-bench; its JSON line goes to $tmp/last.json (and --json), its human line to stderr.
bench() {
        local what="$1"; shift
        echo "  $what" >&2
        "${run_nice[@]}" "$IDM_BENCH" "$@" --warmup "$warmup" >"$tmp/last.json" 2>"$tmp/last.txt" || {
                cat "$tmp/last.txt" >&2
                echo "idm-bench $* failed" >&2
                exit 1
        }
        sed 's/^/    /' "$tmp/last.txt" >&2
        [ -z "$json_out" ] || cat "$tmp/last.json" >>"$json_out"
}

# The last result must show work done and nothing refused or lost; otherwise the run fails at the
# end (the smoke test relies on this). Arguments: JSON path prefixes of load results.
failures=0
check() {
        local p ok err dead
        for p in "$@"; do
                ok=$(jget "$p.ok" <"$tmp/last.json")
                err=$(jget "$p.errors" <"$tmp/last.json")
                dead=$(jget "$p.dead_connections" <"$tmp/last.json")
                if [ "$ok" = null ] || [ "$ok" -le 0 ] || [ "$err" != 0 ] || [ "$dead" != 0 ]; then
                        echo "    SUSPICIOUS: ${p:-result}: $ok ok, $err errors, $dead connections lost" \
                             "($(jget "$p.errors_by_code" <"$tmp/last.json"))" >&2
                        failures=$((failures + 1))
                fi
        done
}

# Appends the value at a JSON path of the last result to the named list.
declare -A results
keep() { results[$1]="${results[$1]:-} $(jget "$2" <"$tmp/last.json")"; }

last() { local v=(${results[$1]:-}); echo "${v[-1]:-nan}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "nan") printf "%.3f", a / b; else print "nan" }'; }
# Records NAME = A / B for this round: each ratio compares figures measured minutes apart.
keep_ratio() { results[$1]="${results[$1]:-} $(ratio "$(last "$2")" "$(last "$3")")"; }

median() {
        tr ' ' '\n' <<<"${results[$1]:-}" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 }
                END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                      else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# How many requests idmd handled in the last idm-bench load (window, warm-up and drain).
handled() {
        echo $(( $(jget .replies <"$tmp/last.json") + $(jget .warmup_replies <"$tmp/last.json") +
                 $(jget .late_replies <"$tmp/last.json") ))
}

# fdatasync and pwrite64 calls per request, counted by syscall tracepoints (perf stat): the number
# that shows whether commits are shared, whatever the noise does to throughput. Optional: needs
# perf and tracefs.
count_pid=""
if command -v perf >/dev/null &&
   perf stat -e syscalls:sys_enter_fdatasync -x, -o /dev/null -- true >/dev/null 2>&1; then
        can_count=1
else
        can_count=0
        echo "perf cannot count system calls here: no fdatasync-per-request figures." >&2
fi
count_start() {
        [ "$can_count" = 1 ] || return 0
        perf stat -x, -o "$tmp/count.csv" -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64 \
                -p "$idmd_pid" >/dev/null 2>&1 &
        count_pid=$!
        sleep 0.2
}
# count_stop NAME: keeps fdatasync and pwrite64 per request of the last load (set-up included:
# one registration per connection) as NAME_fsync and NAME_pwrite.
count_stop() {
        [ "$can_count" = 1 ] && [ -n "$count_pid" ] || return 0
        kill -INT "$count_pid" 2>/dev/null || true
        wait "$count_pid" 2>/dev/null || true
        count_pid=""
        local n fs pw
        n=$(( $(handled) + connections ))
        fs=$(awk -F, '$3 ~ /sys_enter_fdatasync/ && $1 ~ /^[0-9]+$/ { print $1 }' "$tmp/count.csv" 2>/dev/null || true)
        pw=$(awk -F, '$3 ~ /sys_enter_pwrite64/ && $1 ~ /^[0-9]+$/ { print $1 }' "$tmp/count.csv" 2>/dev/null || true)
        rm -f "$tmp/count.csv"
        results[${1}_fsync]="${results[${1}_fsync]:-} $(ratio "${fs:-nan}" "$n")"
        results[${1}_pwrite]="${results[${1}_pwrite]:-} $(ratio "${pw:-nan}" "$n")"
}

common=(--connections "$connections" --threads "$threads" --duration "$duration")
[ -z "$json_out" ] || : >"$json_out"

# ---- the rounds ----

started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$runs"); do
        echo "Round $run of $runs (window ${duration} s after ${warmup} s warm-up):" >&2

        start_idmd
        reply_bytes=$(jget .reply_bytes <"$tmp/idmd-$n_idmd/probe.json")
        bench "getServerInfo" load --socket "$socket" --pid "$idmd_pid" --method getServerInfo "${common[@]}"
        check ""
        keep gsi_rps .throughput; keep gsi_p50 .latency_us.p50; keep gsi_p99 .latency_us.p99
        keep gsi_cpu .server.cpu_us_per_req; keep gsi_sys .server.sys_cpu_us_per_req; keep gsi_rss .server.rss_after_kib
        stop_idmd
        bench "echo floor" floor-echo --dir "$tmp" --reply-size "$reply_bytes" "${common[@]}"
        check ""
        keep echo_rps .throughput; keep echo_p50 .latency_us.p50; keep echo_p99 .latency_us.p99

        bench "LMDB floor" floor-lmdb --dir "$tmp" --records-per-txn 1 --duration "$duration"
        keep lmdb1 .records_per_s; keep lmdb1_p50 .commit_latency_us.p50; keep lmdb1_p99 .commit_latency_us.p99
        bench "LMDB floor" floor-lmdb --dir "$tmp" --records-per-txn 1000 --duration "$duration"
        keep lmdb1000 .records_per_s

        start_idmd
        count_start
        bench "refreshToken" load --socket "$socket" --pid "$idmd_pid" --method refreshToken "${common[@]}"
        count_stop rt
        check ""
        keep rt_rps .throughput; keep rt_p50 .latency_us.p50; keep rt_p99 .latency_us.p99; keep rt_err .errors
        keep rt_cpu .server.cpu_us_per_req; keep rt_sys .server.sys_cpu_us_per_req; keep rt_rss .server.rss_after_kib
        stop_idmd

        start_idmd
        bench "getServerInfo alone, then under refreshToken" mixed --socket "$socket" --pid "$idmd_pid" \
                --read-method getServerInfo --write-method refreshToken --write-connections "$connections" \
                --threads "$threads" --duration "$duration"
        check .read.alone .write
        keep mix_alone_p50 .read.alone.latency_us.p50; keep mix_alone_p99 .read.alone.latency_us.p99
        keep mix_load_p50 .read.under_load.latency_us.p50; keep mix_load_p99 .read.under_load.latency_us.p99
        keep mix_ratio .p99_ratio; keep mix_write_rps .write.throughput
        stop_idmd

        # idmd's hash workers: [passwords] workers, default 2 (idmd/config.c).
        bench "Argon2id floor" floor-argon2 --threads 2 --duration "$duration"
        keep argon .per_s; keep argon_p50 .latency_us.p50; keep argon_p99 .latency_us.p99

        start_idmd
        count_start
        bench "login" load --socket "$socket" --pid "$idmd_pid" --method login "${common[@]}"
        count_stop login
        check ""
        keep login_rps .throughput; keep login_p50 .latency_us.p50; keep login_p99 .latency_us.p99; keep login_err .errors
        keep login_rss .server.rss_after_kib
        stop_idmd

        keep_ratio gsi_ratio gsi_rps echo_rps
        keep_ratio rt_ratio rt_rps lmdb1
        keep_ratio rt1000_ratio rt_rps lmdb1000
        keep_ratio login_ratio login_rps argon
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - started ))

# ---- the table ----

m() { median "$1"; }
# The median of a per-round figure, with its range when there are several rounds: "0.36 (0.31-0.52)".
spread() {
        local v=(${results[$1]:-}) lo hi
        [ ${#v[@]} -gt 0 ] || { echo "nan"; return; }
        lo=$(printf '%s\n' "${v[@]}" | sort -g | head -n1)
        hi=$(printf '%s\n' "${v[@]}" | sort -g | tail -n1)
        if [ ${#v[@]} -gt 1 ]; then
                awk -v m="$(median "$1")" -v lo="$lo" -v hi="$hi" 'BEGIN { f = (m >= 10) ? "%.0f" : "%.2f"; printf f " (" f "-" f ")", m, lo, hi }'
        else
                awk -v m="$(median "$1")" 'BEGIN { printf (m >= 10) ? "%.0f" : "%.2f", m }'
        fi
}
# verdict RATIO OP TARGET: "met" or "missed (x.xx of the target)"
verdict() {
        awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
                if (r == "nan") { print "n/a"; exit }
                if (op == ">=") { if (r >= t) print "met"; else printf "missed: %.2fx of the target\n", r / t }
                else            { if (r <= t) print "met"; else printf "missed: %.1fx over the target\n", r / t }
        }'
}
f2() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.2f", v }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else if (v >= 100) printf "%.0f", v; else printf "%.1f", v }'; }

gsi_ratio=$(m gsi_ratio)
rt_ratio=$(m rt_ratio)
mix_ratio=$(m mix_ratio)

printf '\nidm-bench: %s connections, %s client threads, %s round(s) of %s s windows (medians), niceness %s; %s s in all\n' \
        "$connections" "$threads" "$runs" "$duration" "$niceness" "$elapsed"
printf 'machine: %s cores, %s, kernel %s; state and LMDB floor on %s; load average %s at the start, %s at the end\n' \
        "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" "$(uname -r)" \
        "$(df -T "$tmp" | awk 'NR == 2 { print $2 " (" $1 ")" }')" "$load_start" "$load_end"
printf 'Throughput, latency and floor: medians over the rounds. Ratio: median of the per-round ratios (range).\n\n'
fmt_row='%-40s %12s %10s %10s  %-34s %-18s  %s\n'
printf "$fmt_row" "scenario" "throughput" "p50 µs" "p99 µs" "floor" "ratio" "target"
printf "$fmt_row" "getServerInfo" "$(fmt "$(m gsi_rps)")/s" "$(fmt "$(m gsi_p50)")" "$(fmt "$(m gsi_p99)")" \
        "echo $(fmt "$(m echo_rps)")/s (p99 $(fmt "$(m echo_p99)") µs)" "$(spread gsi_ratio)" \
        ">= 0.5: $(verdict "$gsi_ratio" ">=" 0.5)"
printf "$fmt_row" "refreshToken" "$(fmt "$(m rt_rps)")/s" "$(fmt "$(m rt_p50)")" "$(fmt "$(m rt_p99)")" \
        "LMDB 1 rec/txn $(fmt "$(m lmdb1)")/s" "$(spread rt_ratio)" ">= 5: $(verdict "$rt_ratio" ">=" 5)"
printf "$fmt_row" "  (same, vs the batched LMDB floor)" "" "" "" \
        "LMDB 1000 rec/txn $(fmt "$(m lmdb1000)")/s" "$(spread rt1000_ratio)" "-"
printf "$fmt_row" "getServerInfo p99, alone / under write" "-" \
        "$(fmt "$(m mix_alone_p50)")/$(fmt "$(m mix_load_p50)")" "$(fmt "$(m mix_alone_p99)")/$(fmt "$(m mix_load_p99)")" \
        "refreshToken load $(fmt "$(m mix_write_rps)")/s" "$(spread mix_ratio)" "<= 2: $(verdict "$mix_ratio" "<=" 2)"
printf "$fmt_row" "login (Argon2id default cost)" "$(fmt "$(m login_rps)")/s" "$(fmt "$(m login_p50)")" \
        "$(fmt "$(m login_p99)")" "verify x2 threads $(fmt "$(m argon)")/s" "$(spread login_ratio)" "-"
printf '\nidmd per request (medians): getServerInfo %s µs CPU (%s in the kernel), RSS %s KiB; refreshToken %s µs CPU (%s in the kernel), RSS %s KiB; login RSS %s KiB\n' \
        "$(fmt "$(m gsi_cpu)")" "$(fmt "$(m gsi_sys)")" "$(m gsi_rss)" "$(fmt "$(m rt_cpu)")" "$(fmt "$(m rt_sys)")" \
        "$(m rt_rss)" "$(m login_rss)"
printf 'System calls per request (perf stat, set-up included): refreshToken %s fdatasync, %s pwrite64; login %s fdatasync, %s pwrite64\n' \
        "$(f2 "$(m rt_fsync)")" "$(f2 "$(m rt_pwrite)")" "$(f2 "$(m login_fsync)")" "$(f2 "$(m login_pwrite)")"
printf 'LMDB commit of 1 record: p50 %s µs, p99 %s µs. Errors (medians): refreshToken %s, login %s.\n' \
        "$(fmt "$(m lmdb1_p50)")" "$(fmt "$(m lmdb1_p99)")" "$(m rt_err)" "$(m login_err)"
# Every round's value, so that a disturbed round shows (a commit p50 of milliseconds instead of a
# few hundred µs means the disk was busy with somebody else's writes).
rounds() { local v; for v in ${results[$1]:-}; do printf ' %s' "$(fmt "$v")"; done; }
if [ "$runs" -gt 1 ]; then
        printf 'Per round: getServerInfo%s; echo%s; refreshToken%s; LMDB 1 rec/txn%s (commit p50%s µs); LMDB 1000 rec/txn%s; read p99 ratio%s; login%s; Argon2id%s\n' \
                "$(rounds gsi_rps)" "$(rounds echo_rps)" "$(rounds rt_rps)" "$(rounds lmdb1)" "$(rounds lmdb1_p50)" \
                "$(rounds lmdb1000)" "$(rounds mix_ratio)" "$(rounds login_rps)" "$(rounds argon)"
fi
printf 'Figures are ratios to floors measured in the same run: absolute numbers drift by +-30%% on a shared machine.\n'

# ---- optional profile of the refreshToken scenario ----


if [ "$profile" = 1 ]; then
        echo
        # Hardware counters are often missing in VMs; the cpu-clock software event works anyway.
        if command -v perf >/dev/null && perf stat -e cpu-clock true >/dev/null 2>&1; then
                start_idmd
                perf_dur=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 4 }')
                perf record -e cpu-clock -F 4000 -g -o "$tmp/perf.data" -p "$idmd_pid" -- sleep "$perf_dur" \
                        >"$tmp/perf.out" 2>&1 &
                perf_pid=$!
                sleep 0.5
                bench "refreshToken under perf record" load --socket "$socket" --pid "$idmd_pid" \
                        --method refreshToken "${common[@]}"
                requests=$(handled)
                loop_tid=$idmd_pid
                wait "$perf_pid" || true
                stop_idmd
                # Samples of the event-loop thread (tid = pid) by library; at 4000 Hz each sample is 250 µs.
                echo "perf (cpu-clock, 4000 Hz): idmd's event-loop thread during $requests refreshToken requests"
                echo "(set-up registrations included; hashing runs on other threads and is left out):"
                perf script -i "$tmp/perf.data" -F tid,ip,dso --hide-call-graph 2>/dev/null |
                        awk -v tid="$loop_tid" -v n="$requests" '$1 == tid { d = $NF; gsub(/[()]/, "", d); sub(/.*\//, "", d); c[d]++; t++ }
                                END { for (d in c) printf "  %5.1f%%  %7.1f µs/request  %s\n", 100 * c[d] / t, c[d] * 250 / n, d
                                      printf "  100.0%%  %7.1f µs/request  (all)\n", t * 250 / n }' | sort -k1,1 -rn
                echo "The loop thread's system calls, inclusive (share of all its samples):"
                total=$(perf script -i "$tmp/perf.data" -F tid,ip --hide-call-graph 2>/dev/null | awk -v tid="$loop_tid" '$1 == tid' | wc -l)
                perf report -i "$tmp/perf.data" --stdio --children --tid "$loop_tid" --sort symbol 2>/dev/null |
                        awk -v total="$total" -v all="$(perf script -i "$tmp/perf.data" -F tid --hide-call-graph 2>/dev/null | wc -l)" \
                                '$3 == "[k]" && $4 ~ /^__x64_sys_/ { p = $1; sub(/%/, "", p); if (total > 0) printf "  %5.1f%%  %s\n", p * all / total, $4 }' |
                        head -n 10
        else
                echo "perf is not usable here; skipping the perf profile." >&2
        fi
        if command -v strace >/dev/null; then
                start_idmd
                strace -c -f -o "$tmp/strace.txt" -p "$idmd_pid" 2>/dev/null &
                strace_pid=$!
                sleep 0.5
                bench "refreshToken under strace -c (slowed down by strace)" load --socket "$socket" \
                        --pid "$idmd_pid" --method refreshToken "${common[@]}"
                requests=$(handled)
                kill -INT "$strace_pid" 2>/dev/null || true
                wait "$strace_pid" || true
                stop_idmd
                echo
                echo "strace -c: idmd's system calls per refreshToken request ($requests requests):"
                awk -v n="$requests" 'NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
                                printf "  %-16s %6.2f calls/request  %5s%% of syscall time\n", $NF, $4 / n, $1 }' \
                        "$tmp/strace.txt" | head -n 12
        else
                echo "strace is not installed; skipping the system call count." >&2
        fi
fi

if [ "$failures" -gt 0 ]; then
        echo "$failures result(s) looked wrong (see SUSPICIOUS above)." >&2
        exit 1
fi
