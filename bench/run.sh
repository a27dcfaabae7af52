#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh: idmd's benchmark run (docs/performance.md). Builds idm-bench and idmd into
# build-bench/ (-Dbench=true), then for each scenario starts a fresh idmd on a temporary state
# directory and socket, loads it with idm-bench, stops it, and measures the floor the scenario is
# compared with in the same run (echo round trip, durable LMDB commit, bare Argon2id verify).
# Also: login unloaded (one connection) against one bare verify, a realistic mix of token reads,
# refreshes and logins, and a sign-in through pam_idm in process against login over the socket
# (and against pam_unix with --compare-pam-unix). Prints a table of throughput, latency, floor,
# ratio and the targets, writes every figure as CSV (one row per scenario, connections and round)
# and, with gnuplot, a PNG per scenario into bench/results/ (docs/performance.md, "Reproducing").
# With --backend postgresql each round also runs refreshToken, login and getCustomer with idmd's
# store in PostgreSQL, beside the LMDB figures of the same round, against PostgreSQL's own floor
# (one-row INSERT + COMMIT round trips, idm-bench floor-pg): in a throwaway cluster
# (tests/pg/with-cluster.sh), or in the database $IDM_BENCH_PG names.
#
# Everything it starts it stops (trap), and it writes only below its temporary directory (in
# $TMPDIR or /tmp), the build directory and the results directory: never /etc, /run or /var.
# Two exceptions, each asked for: gnuplot-nox is installed with apt-get when it is missing (not
# with --no-install or --no-plot), and --compare-pam-unix (root only) adds a local user with a
# yescrypt password for pam_unix, removed again on exit (trap).
set -euo pipefail

usage() {
        cat <<EOF
Usage: bench/run.sh [OPTIONS]

  --quick            Smoke run: one round, 1 s windows (about 1 min)
  --runs N           Rounds; the table shows the median of each figure (default 3: about 5 min)
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
  --sweep LIST       Also run getServerInfo (with its echo floor) and refreshToken at each of
                     these connection counts, e.g. 1,4,16,32,64 (default: only --connections)
  --results DIR      Where bench.csv, the PNG plots and run.log go (default bench/results)
  --scale PATH       A CSV of bench/scale.sh (rows scenario,store_size,metric,value), or a
                     directory of them, to plot against store size (default: the results
                     directory and its scale/ subdirectory, when such files are there)
  --no-plot          CSV only, no PNG
  --no-install       Do not install gnuplot-nox when it is missing (then CSV only)
  --no-pam           Skip the PAM comparison
  --backend B        lmdb (default), or postgresql: also the store-bound scenarios with the store
                     in PostgreSQL, side by side with LMDB, against PostgreSQL's one-row commit
                     floor. The database: \$IDM_BENCH_PG (a libpq connection string; each idmd gets
                     a schema of its own there, dropped afterwards), else a throwaway PostgreSQL 15
                     cluster in /tmp (tests/pg/with-cluster.sh: postgresql-15 must be installed)
  --compare-pam-unix Also time pam_unix on a temporary local user with a yescrypt password
                     (root only: useradd, chpasswd; userdel on exit). /etc/pam.d is not touched:
                     the PAM service files live in the temporary directory (pam_wrapper).
  -h, --help         This help

Environment: IDMD (an idmd binary to measure instead of the build directory's; then only
the bench tools and pam_idm are built), IDM_BENCH, PAM_BENCH, PAM_IDM (idm-bench, pam-bench and
pam_idm.so, with --no-build), PAM_WRAPPER_LIB (default Debian's libpam_wrapper.so).
EOF
}

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
args=("$@")
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
sweep=""
results_dir="$here/results"
scale_path=""
plot=1
install=1
pam=1
pam_unix=0
backend=lmdb

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
        --sweep) sweep="$2"; shift ;;
        --results) results_dir="$2"; shift ;;
        --scale) scale_path="$2"; shift ;;
        --no-plot) plot=0 ;;
        --no-install) install=0 ;;
        --no-pam) pam=0 ;;
        --compare-pam-unix) pam_unix=1 ;;
        --backend) backend="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "Unknown option '$1'." >&2; usage >&2; exit 2 ;;
        esac
        shift
done

case "$backend" in
lmdb) ;;
postgresql)
        # No database named: the whole run again beside a throwaway cluster (which it stops).
        if [ -z "${IDM_BENCH_PG:-}" ]; then
                [ -z "${IDM_TEST_PG:-}" ] || exec env IDM_BENCH_PG="$IDM_TEST_PG" "$0" "${args[@]}"
                exec "$src/tests/pg/with-cluster.sh" sh -c 'IDM_BENCH_PG="$IDM_TEST_PG" exec "$0" "$@"' \
                        "$here/run.sh" "${args[@]}"
        fi
        command -v psql >/dev/null || { echo "--backend postgresql needs psql (postgresql-client)." >&2; exit 1; }
        ;;
*) echo "Invalid --backend '$backend': lmdb or postgresql." >&2; exit 2 ;;
esac

# The connection counts of the sweep: sorted, without duplicates, always with --connections.
sweep_list=$(tr ', ' '\n\n' <<<"$sweep $connections" | grep -v '^$' | sort -n -u | tr '\n' ' ')
sweep_list="${sweep_list% }"
for c in $sweep_list; do
        [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -ge 1 ] || { echo "Invalid --sweep '$sweep'." >&2; exit 2; }
done
if [ "$pam_unix" = 1 ]; then
        [ "$(id -u)" = 0 ] || { echo "--compare-pam-unix needs root (it adds a local user for pam_unix)." >&2; exit 2; }
        [ "$pam" = 1 ] || { echo "--compare-pam-unix and --no-pam contradict each other." >&2; exit 2; }
fi

# ---- binaries ----

if [ "$build" = 1 ]; then
        if [ ! -f "$build_dir/build.ninja" ]; then
                meson setup "$build_dir" "$src" -Dbench=true -Dwerror=true >/dev/null
        elif ! grep -q -- "-Dbench=true" "$build_dir/meson-logs/meson-log.txt" 2>/dev/null; then
                meson configure "$build_dir" -Dbench=true >/dev/null
        fi
        targets=(bench/idm-bench bench/pam-bench pam_idm/pam_idm.so idmctl/idmctl)
        [ -n "${IDMD:-}" ] || targets+=(idmd/idmd)
        ninja -C "$build_dir" "${targets[@]}" >/dev/null
fi
IDMD="${IDMD:-$build_dir/idmd/idmd}"
IDM_BENCH="${IDM_BENCH:-$build_dir/bench/idm-bench}"
PAM_BENCH="${PAM_BENCH:-$build_dir/bench/pam-bench}"
PAM_IDM="${PAM_IDM:-$build_dir/pam_idm/pam_idm.so}"
IDMCTL="${IDMCTL:-$build_dir/idmctl/idmctl}"
PAM_WRAPPER_LIB="${PAM_WRAPPER_LIB:-/usr/lib/x86_64-linux-gnu/libpam_wrapper.so}"
for b in "$IDMD" "$IDM_BENCH"; do
        [ -x "$b" ] || { echo "Missing binary $b (build it, or set IDMD / IDM_BENCH)." >&2; exit 1; }
done
# The PAM comparison needs pam-bench, pam_idm.so, pam_wrapper (Debian's libpam-wrapper: PAM
# service files from our temporary directory) and flock (the lock the PAM tests share, since
# pam_wrapper 1.1.4 picks its runtime directory racily; docs/testing.md).
if [ "$pam" = 1 ]; then
        why=""
        [ -x "$PAM_BENCH" ] || why="no pam-bench at $PAM_BENCH"
        [ -f "$PAM_IDM" ] || why="no pam_idm.so at $PAM_IDM"
        [ -f "$PAM_WRAPPER_LIB" ] || why="no pam_wrapper at $PAM_WRAPPER_LIB (Debian package libpam-wrapper)"
        command -v flock >/dev/null || why="no flock (util-linux)"
        if [ -n "$why" ]; then
                [ "$pam_unix" = 0 ] || { echo "--compare-pam-unix: $why." >&2; exit 1; }
                echo "Skipping the PAM comparison: $why." >&2
                pam=0
        fi
fi
if [ "$pam_unix" = 1 ]; then
        pam_unix_so=""
        for d in "$(pkg-config --variable=libdir pam 2>/dev/null)/security" /lib/x86_64-linux-gnu/security \
                 /usr/lib/x86_64-linux-gnu/security /lib/security /usr/lib/security; do
                [ -f "$d/pam_unix.so" ] && { pam_unix_so="$d/pam_unix.so"; break; }
        done
        [ -n "$pam_unix_so" ] || { echo "--compare-pam-unix: pam_unix.so not found." >&2; exit 1; }
        for t in useradd userdel chpasswd getent; do
                command -v "$t" >/dev/null || { echo "--compare-pam-unix needs $t." >&2; exit 1; }
        done
fi
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
        if [ -n "${pg_schema:-}" ]; then
                pg_sql "DROP SCHEMA $pg_schema CASCADE" >/dev/null 2>&1 || true
                pg_schema=""
        fi
        if [ -n "${unix_user:-}" ]; then
                # pam_unix's temporary user: only the one this run added (its unique name).
                userdel "$unix_user" 2>/dev/null || echo "Could not remove the local user $unix_user: remove it with userdel." >&2
                unix_user=""
        fi
        [ "$progress_tty" = 0 ] || printf '\r\033[K' >&2
        rm -rf "$tmp"
}
progress_tty=0
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- results: CSV, plots, progress ----

mkdir -p "$results_dir"
plotted=(getServerInfo refreshToken login mix_getCustomer mix_refreshToken mix_login)
# The plots of an earlier run (only the names run.sh writes): this run's replace them.
for f in "${plotted[@]}"; do rm -f "$results_dir/$f.png"; done
rm -f "$results_dir"/scale-*.png
csv="$results_dir/bench.csv"
run_log="$results_dir/run.log"
: >"$run_log"
echo "scenario,connections,round,throughput_per_s,p50_us,p99_us,floor,floor_value,ratio,idmd_cpu_us_per_req" >"$csv"
# csv_row SCENARIO CONNECTIONS THROUGHPUT P50 P99 FLOOR FLOOR_VALUE RATIO CPU (empty or null: no value)
csv_row() {
        local f out="$1,$2,$run" v
        for v in "${@:3}"; do
                [ "$v" = null ] || [ "$v" = nan ] && v=""
                out="$out,$v"
        done
        echo "$out" >>"$csv"
}

# Plots need gnuplot (Debian's gnuplot-nox), installed here when missing as tools/deps.sh does.
if [ "$plot" = 1 ] && ! command -v gnuplot >/dev/null; then
        if [ "$install" = 1 ] && command -v apt-get >/dev/null; then
                source "$src/tools/deps.sh"
                idm_install_deps gnuplot-nox >/dev/null 2>&1 || true
        fi
        if ! command -v gnuplot >/dev/null; then
                echo "gnuplot is not available (Debian package gnuplot-nox): writing the CSV only, no plots." >&2
                plot=0
        fi
fi

# One step of the run: "scenario k of n, round r of R, elapsed". On a terminal a single line that
# is rewritten (the details go to run.log); otherwise one plain line per step.
[ -t 2 ] && progress_tty=1
n_scenarios=6
[ "$pam" = 0 ] || n_scenarios=$((n_scenarios + 1))
[ "$backend" = lmdb ] || n_scenarios=$((n_scenarios + 1))
k_scenario=0
progress() {
        local line
        k_scenario=$((k_scenario + 1))
        line=$(printf '[%d/%d] round %d of %d: %s (%d s elapsed)' "$(( (k_scenario - 1) % n_scenarios + 1 ))" \
               "$n_scenarios" "$run" "$runs" "$1" "$(( $(date +%s) - started ))")
        echo "$line" >>"$run_log"
        if [ "$progress_tty" = 1 ]; then
                printf '\r\033[K%s' "${line:0:$(( $(tput cols 2>/dev/null || echo 100) - 1 ))}" >&2
        else
                echo "$line" >&2
        fi
}
# Details (each idm-bench's human line) to run.log, and to stderr unless the progress line is.
say() {
        echo "$*" >>"$run_log"
        [ "$progress_tty" = 1 ] || echo "$*" >&2
}

# The production configuration (embedded defaults: Argon2id opslimit 2, memlimit 19 MiB, 2 hash
# workers, synchronous LMDB) except: rate limits that never refuse the benchmark (the keys of
# tests/integration/idmtest.py generous_rate_limits, at their maximum: one source gets half of a
# class's rate), and this user's primary group as the admin
# group, so that createPublisher works without root.
cat >"$tmp/idmd.conf" <<EOF
[daemon]
admin_group = $(id -gn)

[ratelimit.default]
rate = 1000000
burst = 1000000
concurrency = 10000

[ratelimit.login]
rate = 1000000
burst = 1000000
concurrency = 10000

[ratelimit.registration]
rate = 1000000
burst = 1000000
concurrency = 10000

[ratelimit.password_reset]
rate = 1000000
burst = 1000000
concurrency = 10000
EOF

n_idmd=0
# start_idmd [CONFIG]: a fresh idmd (default configuration: $tmp/idmd.conf).
start_idmd() {
        n_idmd=$((n_idmd + 1))
        local d="$tmp/idmd-$n_idmd" conf="${1:-$tmp/idmd.conf}"
        mkdir -p "$d"
        socket="$d/socket"
        "${run_nice[@]}" "$IDMD" --config "$conf" --state-dir "$d/state" --socket "$socket" >"$d/log" 2>&1 &
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

# The store in PostgreSQL (--backend postgresql): each idmd gets a new schema of $IDM_BENCH_PG,
# dropped when it stops (or at exit).
pg_schema=""
pg_sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -A -t -v ON_ERROR_STOP=1 "$IDM_BENCH_PG" -c "$1"; }
start_idmd_pg() {
        pg_schema="idm_bench_$$_$((n_idmd + 1))"
        pg_sql "CREATE SCHEMA $pg_schema" >/dev/null
        { cat "$tmp/idmd.conf"
          printf "\n[store]\nbackend = postgresql\nconnection = %s options='-c search_path=%s'\n" \
                 "$IDM_BENCH_PG" "$pg_schema"; } >"$tmp/idmd-pg.conf"
        start_idmd "$tmp/idmd-pg.conf"
}
stop_idmd_pg() {
        stop_idmd
        pg_sql "DROP SCHEMA $pg_schema CASCADE" >/dev/null
        pg_schema=""
}
# WAL flushes of the whole cluster so far (PostgreSQL 14 and later).
pg_wal_syncs() { pg_sql "SELECT wal_sync FROM pg_stat_wal"; }
# Units of work the running idmd ran again after a serialization conflict (getStats).
conflict_reruns() { "$IDMCTL" --socket "$socket" call getStats | tr -d '\n' | jget .store.conflictReruns; }

# Runs idm-bench; its JSON line goes to $tmp/last.json (and --json), its human line to stderr.
bench() {
        local what="$1"; shift
        say "  $what"
        "${run_nice[@]}" "$IDM_BENCH" "$@" --warmup "$warmup" >"$tmp/last.json" 2>"$tmp/last.txt" || {
                [ "$progress_tty" = 0 ] || printf '\r\033[K' >&2
                cat "$tmp/last.txt" >&2
                echo "idm-bench $* failed" >&2
                exit 1
        }
        say "$(sed 's/^/    /' "$tmp/last.txt")"
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
                        [ "$progress_tty" = 0 ] || printf '\r\033[K' >&2
                        echo "    SUSPICIOUS: ${p:-result}: $ok ok, $err errors, $dead connections lost" \
                             "($(jget "$p.errors_by_code" <"$tmp/last.json"))" | tee -a "$run_log" >&2
                        failures=$((failures + 1))
                fi
        done
}

# Appends the value at a JSON path of the last result to the named list.
declare -A results
keep() { results[$1]="${results[$1]:-} $(jget "$2" <"$tmp/last.json")"; }
# Records NAME = VALUE for this round.
keep_value() { results[$1]="${results[$1]:-} $2"; }

last() { local v=(${results[$1]:-}); echo "${v[-1]:-nan}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "nan") printf "%.3f", a / b; else print "nan" }'; }
# Records NAME = A / B for this round: each ratio compares figures measured minutes apart.
keep_ratio() { results[$1]="${results[$1]:-} $(ratio "$(last "$2")" "$(last "$3")")"; }

median() {
        tr ' ' '\n' <<<"${results[$1]:-}" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 }
                END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                      else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The store's batches and the units of work in them so far (getStats), as "batches units".
store_batches() {
        local j
        j=$("$IDMCTL" --socket "$socket" call getStats | tr -d '\n')
        echo "$(jget .store.batches <<<"$j") $(jget .store.batchedUnits <<<"$j")"
}
# Units of work per batch between two store_batches figures.
batch_size() {
        local b0 u0 b1 u1
        read -r b0 u0 <<<"$1"
        read -r b1 u1 <<<"$2"
        awk -v b=$((b1 - b0)) -v u=$((u1 - u0)) 'BEGIN { if (b > 0) printf "%.1f", u / b; else print "nan" }'
}
# Records one refreshToken writes (idmd/sessions.c session_refresh(), docs/performance.md): the
# successor's record and its expiry entry, the rotated record and its "seal" entry, the family.
REFRESH_RECORDS=5

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

J() { jget "$1" <"$tmp/last.json"; }

# ---- the PAM comparison's set-up: service files (pam_wrapper), pam_unix's user ----

pam_moddir=""
if [ "$pam" = 1 ]; then
        for d in "$(pkg-config --variable=libdir pam 2>/dev/null)/security" /lib/x86_64-linux-gnu/security \
                 /usr/lib/x86_64-linux-gnu/security /lib/security /usr/lib/security; do
                [ -f "$d/pam_deny.so" ] && { pam_moddir="$d"; break; }
        done
        mkdir -p "$tmp/pam.d"
        # libpam reads "other" at every pam_start(): deny everything not named.
        [ -z "$pam_moddir" ] || echo "auth required $pam_moddir/pam_deny.so" >"$tmp/pam.d/other"
        # pam_idm trusts a configuration file only when root owns it; a non-root run trusts its
        # own socket with user=.
        if [ "$(id -u)" = 0 ]; then
                : >"$tmp/pam_idm.conf"
                chmod 0644 "$tmp/pam_idm.conf"
                pam_idm_args=(conf="$tmp/pam_idm.conf")
        else
                pam_idm_args=(user="$(id -un)")
        fi
fi
unix_user=""
if [ "$pam_unix" = 1 ]; then
        echo "auth required $pam_unix_so nodelay" >"$tmp/pam.d/idmbench-unix"
        # A unique name, and only this name is ever removed (cleanup).
        name="idmbench-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
        ! getent passwd "$name" >/dev/null || { echo "$name exists already." >&2; exit 1; }
        useradd --no-create-home --no-user-group --shell /usr/sbin/nologin --comment "idm bench, temporary" "$name"
        unix_user="$name"
        # Debian's default password hash is yescrypt (pam_unix's "yescrypt" in common-password);
        # login.defs may say otherwise, so ask for it.
        echo "$unix_user:bench-Passw0rd!" | chpasswd --crypt-method YESCRYPT
        unix_hash=$(getent shadow "$unix_user" | cut -d: -f2)
        case "$unix_hash" in
        '$y$'*) ;;
        *) echo "chpasswd did not write a yescrypt hash for $unix_user ('${unix_hash:0:4}...')." >&2; exit 1 ;;
        esac
        unix_cost=$(cut -d'$' -f3 <<<"$unix_hash")
        echo "pam_unix: temporary user $unix_user, yescrypt parameters '$unix_cost' (removed on exit)" >&2
fi

# One load of the running idmd at the usual connections (idm-bench load ARGS...), against a floor
# already kept: keeps NAME_rps, _p50, _p99, _cpu and NAME_ratio (throughput over the floor's last
# value), and writes the CSV row SCENARIO with the floor's unit FLOOR_UNIT.
load_vs_floor() {
        local name="$1" scenario="$2" floor="$3" floor_unit="$4"; shift 4
        bench "$scenario" load --socket "$socket" --pid "$idmd_pid" "$@" "${common[@]}"
        check ""
        keep "${name}_rps" .throughput; keep "${name}_p50" .latency_us.p50; keep "${name}_p99" .latency_us.p99
        keep "${name}_cpu" .server.cpu_us_per_req
        keep_ratio "${name}_ratio" "${name}_rps" "$floor"
        csv_row "$scenario" "$connections" "$(J .throughput)" "$(J .latency_us.p50)" "$(J .latency_us.p99)" \
                "$floor_unit" "$(last "$floor")" "$(last "${name}_ratio")" "$(J .server.cpu_us_per_req)"
}

# Registers pam-bench's customer (and a publisher) on the running idmd: sets pb_pub, pb_email.
pam_bench_setup() {
        local setup
        setup=$("$PAM_BENCH" setup --socket "$socket") || { echo "pam-bench setup failed" >&2; exit 1; }
        pb_pub=$(jget .publisherId <<<"$setup")
        pb_email=$(jget .email <<<"$setup")
}

# Runs a pam-bench command line (after WHAT, for the messages): its JSON line to $tmp/last.json,
# its human line to the log. A failure is counted (the run fails at the end) and returns 1.
pam_bench_run() {
        local what="$1"; shift
        if ! "$@" >"$tmp/last.json" 2>"$tmp/last.txt"; then
                [ "$progress_tty" = 0 ] || printf '\r\033[K' >&2
                cat "$tmp/last.txt" >&2
                echo "$what failed" >&2
                failures=$((failures + 1))
                return 1
        fi
        say "$(sed 's/^/    /' "$tmp/last.txt")"
        [ -z "$json_out" ] || cat "$tmp/last.json" >>"$json_out"
}

# pam-bench --verify: logins over the socket (one connection, one at a time) interleaved with bare
# verifications at idmd's cost. No PAM: no pam_wrapper needed.
login_vs_verify() {
        [ -x "$PAM_BENCH" ] || { say "  no pam-bench at $PAM_BENCH: no interleaved login against a bare verify"; return 1; }
        pam_bench_setup
        say "  login over the socket and a bare verify (interleaved, one at a time)"
        pam_bench_run "pam-bench --verify" "${run_nice[@]}" "$PAM_BENCH" run --socket "$socket" \
                --publisher-id "$pb_pub" --email "$pb_email" --verify --duration "$duration" --warmup "$warmup" \
                --pid "$idmd_pid"
}

# One PAM comparison on the running idmd: pam-bench's JSON line in $tmp/last.json.
pam_bench() {
        local svc=idmbench-idm args
        pam_bench_setup
        echo "auth required $PAM_IDM ${pam_idm_args[*]} socket=$socket publisher=$pb_pub" >"$tmp/pam.d/$svc"
        args=(run --socket "$socket" --publisher-id "$pb_pub" --email "$pb_email" --idm-service "$svc"
              --duration "$duration" --warmup "$warmup" --pid "$idmd_pid")
        [ -z "$unix_user" ] || args+=(--unix-service idmbench-unix --unix-user "$unix_user")
        say "  pam_idm in process, login over the socket${unix_user:+, pam_unix} (interleaved, one at a time)"
        # The lock the PAM tests take around every PAM client (docs/testing.md).
        pam_bench_run "pam-bench" flock /tmp/idm-tests-pam-wrapper.lock env LD_PRELOAD="$PAM_WRAPPER_LIB" \
                PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$tmp/pam.d" PAM_WRAPPER_DEBUGLEVEL=0 \
                "${run_nice[@]}" "$PAM_BENCH" "${args[@]}" || true
}

# ---- the rounds ----

started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$runs"); do
        say "Round $run of $runs (window ${duration} s after ${warmup} s warm-up):"

        # getServerInfo and its echo floor, at each connection count of the sweep.
        progress "getServerInfo vs the echo floor (connections: $sweep_list)"
        start_idmd
        reply_bytes=$(jget .reply_bytes <"$tmp/idmd-$n_idmd/probe.json")
        for c in $sweep_list; do
                bench "getServerInfo, $c connections" load --socket "$socket" --pid "$idmd_pid" --method getServerInfo \
                        --connections "$c" --threads "$threads" --duration "$duration"
                check ""
                g_rps=$(J .throughput); g_p50=$(J .latency_us.p50); g_p99=$(J .latency_us.p99); g_cpu=$(J .server.cpu_us_per_req)
                if [ "$c" = "$connections" ]; then
                        keep gsi_rps .throughput; keep gsi_p50 .latency_us.p50; keep gsi_p99 .latency_us.p99
                        keep gsi_cpu .server.cpu_us_per_req; keep gsi_sys .server.sys_cpu_us_per_req; keep gsi_rss .server.rss_after_kib
                fi
                eval "g_rps_$c=\$g_rps g_p50_$c=\$g_p50 g_p99_$c=\$g_p99 g_cpu_$c=\$g_cpu"
        done
        stop_idmd
        for c in $sweep_list; do
                bench "echo floor, $c connections" floor-echo --dir "$tmp" --reply-size "$reply_bytes" \
                        --connections "$c" --threads "$threads" --duration "$duration"
                check ""
                e_rps=$(J .throughput)
                if [ "$c" = "$connections" ]; then
                        keep echo_rps .throughput; keep echo_p50 .latency_us.p50; keep echo_p99 .latency_us.p99
                        keep echo_cpu .echo_server.cpu_us_per_req
                fi
                eval "g_rps=\$g_rps_$c g_p50=\$g_p50_$c g_p99=\$g_p99_$c g_cpu=\$g_cpu_$c"
                csv_row getServerInfo "$c" "$g_rps" "$g_p50" "$g_p99" echo_per_s "$e_rps" "$(ratio "$g_rps" "$e_rps")" "$g_cpu"
                csv_row getServerInfo_cpu "$c" "" "" "" echo_server_cpu_us_per_req "$(J .echo_server.cpu_us_per_req)" \
                        "$(ratio "$g_cpu" "$(J .echo_server.cpu_us_per_req)")" "$g_cpu"
        done

        progress "refreshToken vs durable LMDB commits (connections: $sweep_list)"
        bench "LMDB floor" floor-lmdb --dir "$tmp" --records-per-txn 1 --duration "$duration"
        keep lmdb1 .records_per_s; keep lmdb1_p50 .commit_latency_us.p50; keep lmdb1_p99 .commit_latency_us.p99
        bench "LMDB floor" floor-lmdb --dir "$tmp" --records-per-txn 1000 --duration "$duration"
        keep lmdb1000 .records_per_s

        for c in $sweep_list; do
                start_idmd
                [ "$c" != "$connections" ] || { count_start; batches_before=$(store_batches); }
                bench "refreshToken, $c connections" load --socket "$socket" --pid "$idmd_pid" --method refreshToken \
                        --connections "$c" --threads "$threads" --duration "$duration"
                [ "$c" != "$connections" ] || count_stop rt
                check ""
                if [ "$c" = "$connections" ]; then
                        keep rt_rps .throughput; keep rt_p50 .latency_us.p50; keep rt_p99 .latency_us.p99; keep rt_err .errors
                        keep rt_cpu .server.cpu_us_per_req; keep rt_sys .server.sys_cpu_us_per_req; keep rt_rss .server.rss_after_kib
                        keep_value rt_batch "$(batch_size "$batches_before" "$(store_batches)")"
                        rt_rps_last=$(J .throughput)
                fi
                csv_row refreshToken "$c" "$(J .throughput)" "$(J .latency_us.p50)" "$(J .latency_us.p99)" \
                        lmdb_1_record_per_txn_per_s "$(last lmdb1)" "$(ratio "$(J .throughput)" "$(last lmdb1)")" \
                        "$(J .server.cpu_us_per_req)"
                stop_idmd
        done
        # LMDB's own floor for the commits idmd made: records per transaction = the units of
        # work per batch it reached × the records one refresh writes.
        shape=$(awk -v b="$(last rt_batch)" -v r="$REFRESH_RECORDS" 'BEGIN { n = int(b * r + 0.5); print (n > 0 ? n : 1) }')
        bench "LMDB floor at refreshToken's batch shape" floor-lmdb --dir "$tmp" --records-per-txn "$shape" --duration "$duration"
        keep_value lmdb_shape "$(awk -v v="$(J .records_per_s)" -v r="$REFRESH_RECORDS" 'BEGIN { printf "%.1f", v / r }')"
        keep_value lmdb_shape_records "$shape"
        csv_row refreshToken_batch_shape "$connections" "$rt_rps_last" "" "" lmdb_refreshes_per_s_at_batch_shape \
                "$(last lmdb_shape)" "$(ratio "$rt_rps_last" "$(last lmdb_shape)")" ""

        progress "getServerInfo alone, then under a refreshToken load"
        start_idmd
        bench "getServerInfo alone, then under refreshToken" mixed --socket "$socket" --pid "$idmd_pid" \
                --read-method getServerInfo --write-method refreshToken --write-connections "$connections" \
                --threads "$threads" --duration "$duration"
        check .read.alone .write
        keep mix_alone_p50 .read.alone.latency_us.p50; keep mix_alone_p99 .read.alone.latency_us.p99
        keep mix_load_p50 .read.under_load.latency_us.p50; keep mix_load_p99 .read.under_load.latency_us.p99
        keep mix_ratio .p99_ratio; keep mix_write_rps .write.throughput
        csv_row getServerInfo_under_refreshToken 1 "$(J .read.under_load.throughput)" "$(J .read.under_load.latency_us.p50)" \
                "$(J .read.under_load.latency_us.p99)" read_alone_p99_us "$(J .read.alone.latency_us.p99)" "$(J .p99_ratio)" ""
        stop_idmd

        progress "login vs bare Argon2id verification (32 connections and unloaded)"
        # idmd's hash workers: [passwords] workers, default 2 (idmd/config.c).
        bench "Argon2id floor, 2 threads" floor-argon2 --threads 2 --duration "$duration"
        keep argon .per_s; keep argon_p50 .latency_us.p50; keep argon_p99 .latency_us.p99
        start_idmd
        count_start
        bench "login" load --socket "$socket" --pid "$idmd_pid" --method login "${common[@]}"
        count_stop login
        check ""
        keep login_rps .throughput; keep login_p50 .latency_us.p50; keep login_p99 .latency_us.p99; keep login_err .errors
        keep login_rss .server.rss_after_kib; keep login_cpu .server.cpu_us_per_req
        csv_row login "$connections" "$(J .throughput)" "$(J .latency_us.p50)" "$(J .latency_us.p99)" \
                argon2id_verify_2_threads_per_s "$(last argon)" "$(ratio "$(J .throughput)" "$(last argon)")" \
                "$(J .server.cpu_us_per_req)"
        stop_idmd

        # Unloaded: one connection, one login at a time (throughput and idmd's CPU), and its p50
        # against one bare verify from pam-bench --verify, which interleaves the two (a login, a
        # verify, a login, ...): this machine's single-thread speed moves by 2-3x between windows
        # a few seconds apart, so a floor measured before the login says little about it.
        progress "login unloaded (1 connection) vs one bare verification, interleaved"
        start_idmd
        bench "login, 1 connection" load --socket "$socket" --pid "$idmd_pid" --method login \
                --connections 1 --threads 1 --duration "$duration"
        check ""
        keep login1_rps .throughput; keep login1_cpu .server.cpu_us_per_req
        login1_rps_last=$(J .throughput); login1_cpu_last=$(J .server.cpu_us_per_req)
        if login_vs_verify; then
                keep login1_p50 .latency_us.login.p50; keep login1_p99 .latency_us.login.p99
                keep argon1_p50 .latency_us.verify.p50; keep argon1_p99 .latency_us.verify.p99
                keep login1_ratio .login_to_verify_p50
                csv_row login 1 "$login1_rps_last" "$(J .latency_us.login.p50)" "$(J .latency_us.login.p99)" \
                        argon2id_verify_p50_us_interleaved "$(J .latency_us.verify.p50)" "$(J .login_to_verify_p50)" \
                        "$login1_cpu_last"
        fi
        stop_idmd

        # The realistic mix: token reads, refreshes and logins on every connection.
        progress "mix 90/9/1 of getCustomer (JWT), refreshToken, login"
        start_idmd
        bench "getCustomer alone, then the 90/9/1 mix" mix --socket "$socket" --pid "$idmd_pid" --weights 90,9,1 \
                "${common[@]}"
        check .reads_alone .mix
        keep blend_alone_rps .reads_alone.by_method.getCustomer.throughput
        keep blend_alone_p50 .reads_alone.by_method.getCustomer.latency_us.p50
        keep blend_alone_p99 .reads_alone.by_method.getCustomer.latency_us.p99
        keep blend_ratio .p99_ratio; keep blend_rps .mix.throughput; keep blend_cpu .server_mix.cpu_us_per_req
        csv_row getCustomer_alone "$connections" "$(J .reads_alone.throughput)" "$(J .reads_alone.latency_us.p50)" \
                "$(J .reads_alone.latency_us.p99)" "" "" "" "$(J .server_alone.cpu_us_per_req)"
        for mm in getCustomer refreshToken login; do
                keep "blend_${mm}_rps" ".mix.by_method.$mm.throughput"
                keep "blend_${mm}_p50" ".mix.by_method.$mm.latency_us.p50"
                keep "blend_${mm}_p99" ".mix.by_method.$mm.latency_us.p99"
                if [ "$mm" = getCustomer ]; then
                        fl=(getCustomer_alone_p99_us "$(J .read_p99_alone_us)" "$(J .p99_ratio)")
                else
                        fl=("" "" "")
                fi
                csv_row "mix_$mm" "$connections" "$(J .mix.by_method.$mm.throughput)" "$(J .mix.by_method.$mm.latency_us.p50)" \
                        "$(J .mix.by_method.$mm.latency_us.p99)" "${fl[@]}" "$(J .server_mix.cpu_us_per_req)"
        done
        stop_idmd

        # JWT-authenticated reads against bare Ed25519 verification on as many threads as cores.
        progress "getCustomer with a JWT vs bare Ed25519 verification"
        bench "Ed25519 floor, $(nproc) threads" floor-ed25519 --threads "$(nproc)" --duration "$duration"
        keep ed25519 .per_s
        start_idmd
        load_vs_floor jwt getCustomer_jwt ed25519 ed25519_verify_per_s --method getCustomer
        stop_idmd

        # getJwks: a kept reply, like getServerInfo, against the same echo floor (its reply is a
        # little larger; the floor's reply size is getServerInfo's).
        start_idmd
        load_vs_floor jwks getJwks echo_rps echo_per_s --method getJwks
        stop_idmd

        # getPublisherConsents: a kept reply per publisher; two consents, as a publisher has.
        start_idmd
        pub_json=$("$IDMCTL" --socket "$socket" --json publisher create Bench)
        pub_id=$(jget .publisherId <<<"$pub_json")
        pub_token=$(jget .publisherToken <<<"$pub_json")
        "$IDMCTL" --socket "$socket" call setPublisherConsents "{\"publisherToken\":\"$pub_token\",\"consents\":[{\"name\":\"terms\",\"label\":\"Terms of use\",\"required\":true},{\"name\":\"newsletter\",\"label\":\"Newsletter\",\"required\":false}]}" >/dev/null
        load_vs_floor gpc getPublisherConsents echo_rps echo_per_s --method getPublisherConsents \
                --params "{\"publisherId\":\"$pub_id\"}"
        stop_idmd

        if [ "$pam" = 1 ]; then
                progress "PAM: pam_idm in process vs login over the socket${unix_user:+ vs pam_unix}"
                start_idmd
                pam_bench
                if [ -s "$tmp/last.json" ] && [ "$(J .bench)" = pam ]; then
                        keep pam_idm_p50 .latency_us.pam_idm.p50; keep pam_idm_p99 .latency_us.pam_idm.p99
                        keep pam_login_p50 .latency_us.login.p50; keep pam_login_p99 .latency_us.login.p99
                        keep pam_ratio .pam_idm_to_login_p50
                        keep pam_idm_self .latency_us.pam_idm.self_cpu_us; keep pam_idm_idmd .latency_us.pam_idm.idmd_cpu_us
                        keep pam_login_self .latency_us.login.self_cpu_us; keep pam_login_idmd .latency_us.login.idmd_cpu_us
                        csv_row pam_idm 1 "" "$(J .latency_us.pam_idm.p50)" "$(J .latency_us.pam_idm.p99)" \
                                login_socket_p50_us "$(J .latency_us.login.p50)" "$(J .pam_idm_to_login_p50)" \
                                "$(J .latency_us.pam_idm.idmd_cpu_us)"
                        csv_row login_socket 1 "" "$(J .latency_us.login.p50)" "$(J .latency_us.login.p99)" "" "" "" \
                                "$(J .latency_us.login.idmd_cpu_us)"
                        if [ -n "$unix_user" ]; then
                                keep pam_unix_p50 .latency_us.pam_unix.p50; keep pam_unix_p99 .latency_us.pam_unix.p99
                                keep pam_unix_ratio .pam_idm_to_pam_unix_p50; keep pam_unix_self .latency_us.pam_unix.self_cpu_us
                                csv_row pam_idm_vs_pam_unix 1 "" "$(J .latency_us.pam_idm.p50)" "$(J .latency_us.pam_idm.p99)" \
                                        pam_unix_p50_us "$(J .latency_us.pam_unix.p50)" "$(J .pam_idm_to_pam_unix_p50)" ""
                                csv_row pam_unix 1 "" "$(J .latency_us.pam_unix.p50)" "$(J .latency_us.pam_unix.p99)" "" "" "" ""
                        fi
                fi
                stop_idmd
        fi

        # The store in PostgreSQL: the scenarios that write or read it, beside this round's LMDB
        # figures, and PostgreSQL's own floor.
        if [ "$backend" = postgresql ]; then
                progress "PostgreSQL store: one-row commit floor, refreshToken, login, getCustomer (JWT)"
                bench "PostgreSQL floor: one-row INSERT + COMMIT, 1 connection" floor-pg --conninfo "$IDM_BENCH_PG" \
                        --duration "$duration"
                keep pg_floor .commits_per_s; keep pg_floor_p50 .commit_latency_us.p50
                keep pg_floor_p99 .commit_latency_us.p99

                # Group size: units of work (the refreshes and each connection's registration) per
                # WAL flush of the cluster during the load (background flushes count too).
                start_idmd_pg
                wal0=$(pg_wal_syncs)
                reruns0=$(conflict_reruns)
                bench "refreshToken, store in PostgreSQL" load --socket "$socket" --pid "$idmd_pid" \
                        --method refreshToken "${common[@]}"
                wal1=$(pg_wal_syncs)
                keep_value pg_rt_reruns "$(ratio "$(( $(conflict_reruns) - reruns0 ))" "$(( $(handled) + connections ))")"
                check ""
                keep pg_rt_rps .throughput; keep pg_rt_p50 .latency_us.p50; keep pg_rt_p99 .latency_us.p99
                keep pg_rt_cpu .server.cpu_us_per_req
                keep_value pg_group "$(awk -v u=$(( $(handled) + connections )) -v s=$((wal1 - wal0)) \
                        'BEGIN { if (s > 0) printf "%.2f", u / s; else print "nan" }')"
                pg_group_floor=$(awk -v f="$(last pg_floor)" -v g="$(last pg_group)" \
                        'BEGIN { if (f > 0 && g != "nan") printf "%.1f", f * g; else print "nan" }')
                keep_value pg_rt_ratio "$(ratio "$(J .throughput)" "$pg_group_floor")"
                csv_row refreshToken_postgresql "$connections" "$(J .throughput)" "$(J .latency_us.p50)" \
                        "$(J .latency_us.p99)" pg_1_row_commits_per_s_x_group "$pg_group_floor" \
                        "$(last pg_rt_ratio)" "$(J .server.cpu_us_per_req)"
                stop_idmd_pg

                start_idmd_pg
                bench "login, store in PostgreSQL" load --socket "$socket" --pid "$idmd_pid" --method login \
                        "${common[@]}"
                check ""
                keep pg_login_rps .throughput; keep pg_login_p50 .latency_us.p50; keep pg_login_p99 .latency_us.p99
                keep_ratio pg_login_ratio pg_login_p50 login_p50
                csv_row login_postgresql "$connections" "$(J .throughput)" "$(J .latency_us.p50)" "$(J .latency_us.p99)" \
                        lmdb_login_p50_us "$(last login_p50)" "$(last pg_login_ratio)" "$(J .server.cpu_us_per_req)"
                stop_idmd_pg

                start_idmd_pg
                bench "getCustomer with a JWT, store in PostgreSQL" load --socket "$socket" --pid "$idmd_pid" \
                        --method getCustomer "${common[@]}"
                check ""
                keep pg_jwt_rps .throughput; keep pg_jwt_p50 .latency_us.p50; keep pg_jwt_p99 .latency_us.p99
                keep pg_jwt_cpu .server.cpu_us_per_req
                keep_ratio pg_jwt_ratio pg_jwt_rps jwt_rps
                csv_row getCustomer_jwt_postgresql "$connections" "$(J .throughput)" "$(J .latency_us.p50)" \
                        "$(J .latency_us.p99)" lmdb_per_s "$(last jwt_rps)" "$(last pg_jwt_ratio)" \
                        "$(J .server.cpu_us_per_req)"
                stop_idmd_pg
        fi

        keep_ratio gsi_ratio gsi_rps echo_rps
        keep_ratio gsi_cpu_ratio gsi_cpu echo_cpu
        keep_ratio rt_ratio rt_rps lmdb1
        keep_ratio rt1000_ratio rt_rps lmdb1000
        keep_ratio rt_shape_ratio rt_rps lmdb_shape
        keep_ratio login_ratio login_rps argon
done
[ "$progress_tty" = 0 ] || printf '\r\033[K' >&2
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
                else            { if (r <= t) print "met"; else printf "missed: %.2fx over the target\n", r / t }
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
        ">= 0.6: $(verdict "$gsi_ratio" ">=" 0.6)"
printf "$fmt_row" "getJwks" "$(fmt "$(m jwks_rps)")/s" "$(fmt "$(m jwks_p50)")" "$(fmt "$(m jwks_p99)")" \
        "echo $(fmt "$(m echo_rps)")/s" "$(spread jwks_ratio)" ">= 0.6: $(verdict "$(m jwks_ratio)" ">=" 0.6)"
printf "$fmt_row" "getPublisherConsents" "$(fmt "$(m gpc_rps)")/s" "$(fmt "$(m gpc_p50)")" "$(fmt "$(m gpc_p99)")" \
        "echo $(fmt "$(m echo_rps)")/s" "$(spread gpc_ratio)" ">= 0.6: $(verdict "$(m gpc_ratio)" ">=" 0.6)"
printf "$fmt_row" "getServerInfo: idmd CPU per request" "-" "-" "-" \
        "echo server $(fmt "$(m echo_cpu)") µs/req" "$(spread gsi_cpu_ratio)" \
        "<= 8 µs: $(fmt "$(m gsi_cpu)") µs, $(verdict "$(m gsi_cpu)" "<=" 8)"
printf "$fmt_row" "getCustomer with a JWT" "$(fmt "$(m jwt_rps)")/s" "$(fmt "$(m jwt_p50)")" "$(fmt "$(m jwt_p99)")" \
        "Ed25519 verify x$(nproc) $(fmt "$(m ed25519)")/s" "$(spread jwt_ratio)" ">= 0.8: $(verdict "$(m jwt_ratio)" ">=" 0.8)"
printf "$fmt_row" "refreshToken" "$(fmt "$(m rt_rps)")/s" "$(fmt "$(m rt_p50)")" "$(fmt "$(m rt_p99)")" \
        "LMDB 1 rec/txn $(fmt "$(m lmdb1)")/s" "$(spread rt_ratio)" ">= 5: $(verdict "$rt_ratio" ">=" 5)"
printf "$fmt_row" "  (same, vs the batched LMDB floor)" "" "" "" \
        "LMDB 1000 rec/txn $(fmt "$(m lmdb1000)")/s" "$(spread rt1000_ratio)" "-"
printf "$fmt_row" "  (same, vs LMDB at its batch shape)" "" "" "" \
        "$(fmt "$(m rt_batch)") units/batch: $(fmt "$(m lmdb_shape)")/s" "$(spread rt_shape_ratio)" "-"
printf "$fmt_row" "getServerInfo p99, alone / under write" "-" \
        "$(fmt "$(m mix_alone_p50)")/$(fmt "$(m mix_load_p50)")" "$(fmt "$(m mix_alone_p99)")/$(fmt "$(m mix_load_p99)")" \
        "refreshToken load $(fmt "$(m mix_write_rps)")/s" "$(spread mix_ratio)" "<= 2: $(verdict "$mix_ratio" "<=" 2)"
printf "$fmt_row" "login (Argon2id default cost)" "$(fmt "$(m login_rps)")/s" "$(fmt "$(m login_p50)")" \
        "$(fmt "$(m login_p99)")" "verify x2 threads $(fmt "$(m argon)")/s" "$(spread login_ratio)" \
        ">= 1.5: $(verdict "$(m login_ratio)" ">=" 1.5)"
printf "$fmt_row" "login unloaded (1 connection), p50" "$(fmt "$(m login1_rps)")/s" "$(fmt "$(m login1_p50)")" \
        "$(fmt "$(m login1_p99)")" "one verify p50 $(fmt "$(m argon1_p50)") µs, interleaved" "$(spread login1_ratio)" \
        "<= 1.10: $(verdict "$(m login1_ratio)" "<=" 1.10)"
printf "$fmt_row" "mix 90/9/1: getCustomer" "$(fmt "$(m blend_getCustomer_rps)")/s" "$(fmt "$(m blend_getCustomer_p50)")" \
        "$(fmt "$(m blend_getCustomer_p99)")" "alone $(fmt "$(m blend_alone_rps)")/s, p99 $(fmt "$(m blend_alone_p99)") µs" \
        "$(spread blend_ratio)" "p99 <= 2: $(verdict "$(m blend_ratio)" "<=" 2)"
printf "$fmt_row" "mix 90/9/1: refreshToken" "$(fmt "$(m blend_refreshToken_rps)")/s" "$(fmt "$(m blend_refreshToken_p50)")" \
        "$(fmt "$(m blend_refreshToken_p99)")" "" "" "-"
printf "$fmt_row" "mix 90/9/1: login" "$(fmt "$(m blend_login_rps)")/s" "$(fmt "$(m blend_login_p50)")" \
        "$(fmt "$(m blend_login_p99)")" "" "" "-"
if [ "$pam" = 1 ]; then
        printf "$fmt_row" "pam_idm in process (1 at a time)" "-" "$(fmt "$(m pam_idm_p50)")" "$(fmt "$(m pam_idm_p99)")" \
                "login over the socket p50 $(fmt "$(m pam_login_p50)") µs" "$(spread pam_ratio)" \
                "<= 1.10: $(verdict "$(m pam_ratio)" "<=" 1.10)"
        if [ -n "$unix_user" ]; then
                printf "$fmt_row" "pam_idm vs pam_unix, p50" "-" "$(fmt "$(m pam_idm_p50)")" "$(fmt "$(m pam_idm_p99)")" \
                        "pam_unix p50 $(fmt "$(m pam_unix_p50)"), p99 $(fmt "$(m pam_unix_p99)")" "$(spread pam_unix_ratio)" \
                        "<= 0.4: $(verdict "$(m pam_unix_ratio)" "<=" 0.4)"
        fi
fi
if [ "$backend" = postgresql ]; then
        printf "$fmt_row" "PostgreSQL: one-row INSERT + COMMIT" "$(fmt "$(m pg_floor)")/s" "$(fmt "$(m pg_floor_p50)")" \
                "$(fmt "$(m pg_floor_p99)")" "1 connection, one after another" "-" "-"
        printf "$fmt_row" "PostgreSQL: refreshToken" "$(fmt "$(m pg_rt_rps)")/s" "$(fmt "$(m pg_rt_p50)")" \
                "$(fmt "$(m pg_rt_p99)")" "floor x $(fmt "$(m pg_group)") units/WAL flush" "$(spread pg_rt_ratio)" \
                ">= 0.5: $(verdict "$(m pg_rt_ratio)" ">=" 0.5)"
        printf "$fmt_row" "PostgreSQL: login, p50 vs LMDB's" "$(fmt "$(m pg_login_rps)")/s" "$(fmt "$(m pg_login_p50)")" \
                "$(fmt "$(m pg_login_p99)")" "LMDB login p50 $(fmt "$(m login_p50)") µs" "$(spread pg_login_ratio)" \
                "<= 1.1: $(verdict "$(m pg_login_ratio)" "<=" 1.1)"
        printf "$fmt_row" "PostgreSQL: getCustomer with a JWT" "$(fmt "$(m pg_jwt_rps)")/s" "$(fmt "$(m pg_jwt_p50)")" \
                "$(fmt "$(m pg_jwt_p99)")" "LMDB $(fmt "$(m jwt_rps)")/s" "$(spread pg_jwt_ratio)" "-"
fi
printf '\nidmd CPU per request (medians; target for getServerInfo and getJwks <= 8 µs, refreshToken <= 60 µs): getJwks %s µs, getPublisherConsents %s µs, getCustomer (JWT) %s µs\n' \
        "$(fmt "$(m jwks_cpu)")" "$(fmt "$(m gpc_cpu)")" "$(fmt "$(m jwt_cpu)")"
printf 'idmd per request (medians): getServerInfo %s µs CPU (%s in the kernel), RSS %s KiB; refreshToken %s µs CPU (%s in the kernel), RSS %s KiB; login RSS %s KiB, %s µs CPU (unloaded %s); mix %s µs CPU\n' \
        "$(fmt "$(m gsi_cpu)")" "$(fmt "$(m gsi_sys)")" "$(m gsi_rss)" "$(fmt "$(m rt_cpu)")" "$(fmt "$(m rt_sys)")" \
        "$(m rt_rss)" "$(m login_rss)" "$(fmt "$(m login_cpu)")" "$(fmt "$(m login1_cpu)")" "$(fmt "$(m blend_cpu)")"
if [ "$pam" = 1 ]; then
        printf 'CPU per sign-in (medians): pam_idm %s µs in the application + %s µs in idmd; login over the socket %s µs in the client + %s µs in idmd' \
                "$(fmt "$(m pam_idm_self)")" "$(fmt "$(m pam_idm_idmd)")" "$(fmt "$(m pam_login_self)")" "$(fmt "$(m pam_login_idmd)")"
        [ -z "$unix_user" ] || printf '; pam_unix %s µs in the application' "$(fmt "$(m pam_unix_self)")"
        printf '\n'
fi
printf 'System calls per request (perf stat, set-up included): refreshToken %s fdatasync, %s pwrite64; login %s fdatasync, %s pwrite64\n' \
        "$(f2 "$(m rt_fsync)")" "$(f2 "$(m rt_pwrite)")" "$(f2 "$(m login_fsync)")" "$(f2 "$(m login_pwrite)")"
[ "$backend" = lmdb ] || printf 'Store in PostgreSQL, idmd CPU per request (medians): refreshToken %s µs (LMDB %s), getCustomer (JWT) %s µs (LMDB %s); refreshToken units run again after a conflict: %s per request\n' \
        "$(fmt "$(m pg_rt_cpu)")" "$(fmt "$(m rt_cpu)")" "$(fmt "$(m pg_jwt_cpu)")" "$(fmt "$(m jwt_cpu)")" \
        "$(f2 "$(m pg_rt_reruns)")"
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

# ---- plots ----

# plot_connections SCENARIO: throughput, p50 and p99, and idmd's CPU per request against connections
# (medians over the rounds) from the CSV, as $results_dir/SCENARIO.png; a floor in requests/s
# (*_per_s) is drawn with the throughput.
plot_connections() {
        local sc="$1" dat="$tmp/plot-$1.dat" floor floor_plot
        floor=$(awk -F, -v sc="$sc" 'NR > 1 && $1 == sc && $7 ~ /_per_s$/ { print $7; exit }' "$csv")
        awk -F, -v sc="$sc" 'NR > 1 && $1 == sc { k = $2; n[k]++; t[k, n[k]] = $4; a[k, n[k]] = $5; b[k, n[k]] = $6
                                                  f[k, n[k]] = ($7 ~ /_per_s$/) ? $8 : ""; u[k, n[k]] = $10 }
                function med(arr, k, m,   i, j, x, v) { m = 0; for (i = 1; i <= n[k]; i++) if (arr[k, i] != "") v[++m] = arr[k, i] + 0
                        for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
                        if (m == 0) return "NaN"; return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
                END { for (k in n) print k, med(t, k), med(a, k), med(b, k), med(f, k), med(u, k) }' "$csv" | sort -n >"$dat"
        [ -s "$dat" ] || return 0
        floor_plot=""
        [ -z "$floor" ] || floor_plot=", \"$dat\" using 1:5 with linespoints dashtype 2 title \"floor: $floor\""
        gnuplot 2>>"$run_log" <<GP || echo "gnuplot failed for $sc (see $run_log)" >&2
set terminal pngcairo size 900,950 noenhanced font ",10"
set output "$results_dir/$sc.png"
set datafile missing "NaN"
set multiplot layout 3,1 title "$sc: $runs round(s) of ${duration} s, $threads client threads, median over rounds ($(date -u +%Y-%m-%d))"
set grid
set key left top
set offsets graph 0.03, graph 0.03, graph 0.05, 0
set pointsize 1.5
set logscale x 2
set xlabel "connections"
set ylabel "requests/s"
set yrange [0:*]
plot "$dat" using 1:2 with linespoints title "throughput"$floor_plot
set logscale y
set yrange [*:*]
set ylabel "latency, µs (log)"
plot "$dat" using 1:3 with linespoints title "p50", "$dat" using 1:4 with linespoints title "p99"
unset logscale y
set yrange [0:*]
set ylabel "µs of idmd CPU per request"
plot "$dat" using 1:6 with linespoints title "idmd CPU per request (all threads, from /proc)"
unset multiplot
GP
}

# plot_scale FILE: bench/scale.sh's rows (scenario,store_size,metric,value), one PNG per scenario:
# each metric against the store size.
plot_scale() {
        local f="$1" sc metrics pl m
        head -n1 "$f" | grep -q '^scenario,store_size,metric,value' || return 0
        for sc in $(awk -F, 'NR > 1 { print $1 }' "$f" | sort -u); do
                metrics=$(awk -F, -v sc="$sc" 'NR > 1 && $1 == sc { print $3 }' "$f" | sort -u)
                pl=""
                for m in $metrics; do
                        awk -F, -v sc="$sc" -v m="$m" 'NR > 1 && $1 == sc && $3 == m { print $2, $4 }' "$f" | sort -n \
                                >"$tmp/scale-$sc-$m.dat"
                        pl="${pl:+$pl, }\"$tmp/scale-$sc-$m.dat\" using 1:2 with linespoints title \"$m\""
                done
                [ -n "$pl" ] || continue
                gnuplot 2>>"$run_log" <<GP || echo "gnuplot failed for $f (see $run_log)" >&2
set terminal pngcairo size 900,500 noenhanced font ",10"
set output "$results_dir/scale-$sc.png"
set title "$sc against store size ($(basename "$f"))"
set grid
set key left top
set logscale x 10
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
set xlabel "customers in the store"
set ylabel "value (see the metric's name for its unit)"
plot $pl
GP
        done
}

plots=""
if [ "$plot" = 1 ]; then
        for sc in "${plotted[@]}"; do
                plot_connections "$sc"
                [ ! -f "$results_dir/$sc.png" ] || plots="$plots $sc.png"
        done
        if [ -n "$scale_path" ]; then
                scale_files=("$scale_path")
                [ ! -d "$scale_path" ] || scale_files=("$scale_path"/*.csv)
        else
                scale_files=("$results_dir"/*.csv "$results_dir"/scale/*.csv)
        fi
        for f in "${scale_files[@]}"; do
                [ -f "$f" ] && [ "$f" != "$csv" ] || continue
                plot_scale "$f"
        done
        for f in "$results_dir"/scale-*.png; do
                [ ! -f "$f" ] || plots="$plots $(basename "$f")"
        done
fi
printf 'CSV: %s (one row per scenario, connections and round)%s\n' "$csv" \
        "${plots:+; plots in $results_dir:$plots}"

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
