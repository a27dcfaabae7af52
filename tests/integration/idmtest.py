# SPDX-License-Identifier: MIT
"""Test harness for idm's integration tests: starts a real idmd on a temporary socket and state
directory (with a cheap Argon2 cost), and talks newline-delimited JSON-RPC 2.0 to it.

Every idmd started here is stopped when its test ends (and, as a last resort, at interpreter
exit), and its temporary directory removed. Nothing outside the temporary directory is touched.
"""

import atexit
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

IDMD = os.environ.get("IDMD", "idmd")
IDMCTL = os.environ.get("IDMCTL", "idmctl")

# Cheapest Argon2id cost libsodium accepts: tests measure behaviour, not hashing speed.
BASE_CONFIG = """\
[passwords]
argon2_opslimit = 1
argon2_memlimit = 8K
"""

# The production rate limits (docs/ratelimits.md) would throttle tests that fire many requests
# from root in a burst. Every class a test's config does not set gets generous limits, appended
# after it (so line numbers in the test's config stay as written).
RATELIMIT_CLASSES = ("default", "login", "registration", "password_reset", "userdb")


def generous_rate_limits(config):
    return "".join(f"\n[ratelimit.{c}]\nrate = 100000\nburst = 100000\nconcurrency = 10000\n"
                   for c in RATELIMIT_CLASSES if f"[ratelimit.{c}]" not in config)


# With IDM_TEST_PG (meson test --setup=postgresql: tests/pg/with-cluster.sh starts a throwaway
# PostgreSQL and sets it), every idmd keeps its store in PostgreSQL: a schema of its own in the
# test database, made when the Idmd is made and named after its temporary directory, so that an
# idmd started again on the same directory finds its store.
TEST_PG = os.environ.get("IDM_TEST_PG")


def postgresql_schema(tmp):
    import hashlib
    schema = "t_" + hashlib.sha1(tmp.encode()).hexdigest()[:20]
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", TEST_PG, "-c",
                    f"CREATE SCHEMA IF NOT EXISTS {schema}"], check=True, stdout=subprocess.DEVNULL)
    return schema


def postgresql_store_config(schema):
    return f"\n[store]\nbackend = postgresql\nconnection = {TEST_PG} options='-c search_path={schema}'\n"


def skip_on_postgresql(reason):
    """For a test of what only the LMDB store has (its file, its map, its backups): skipped under
    meson test --setup=postgresql, with the reason (docs/store.md lists them)."""
    return unittest.skipIf(TEST_PG, f"LMDB only: {reason}")


# The tables of the store, in the order of StoreTable (idmd/store.h): on PostgreSQL, the value of
# idm_records.tbl.
STORE_TABLES = ["meta", "publishers", "publisher_tokens", "offers", "customers", "customers_by_email",
                "customers_by_external_id", "tokens", "consents", "capture", "lockouts", "outbox",
                "token_expiry", "unix_uids"]


def psql_json(schema, query):
    """The one JSON value a query on the test database returns."""
    out = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", TEST_PG, "-c",
                          f"SET search_path = {schema}; {query}"], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    return json.loads(out[-1]) if out and out[-1] else None


def mdb_table(state, table):
    """{key: parsed JSON record} of one table, read with mdb_dump (LMDB allows a reader while
    idmd runs)."""
    out = subprocess.run(["mdb_dump", "-p", "-s", table, state], capture_output=True, text=True,
                         check=True).stdout
    lines = out.split("\n")
    data = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]

    def unescape(s):
        b = bytearray()
        i = 0
        while i < len(s):
            if s[i] == "\\":
                if s[i + 1] == "\\":
                    b.append(0x5C)
                    i += 2
                else:
                    b.append(int(s[i + 1:i + 3], 16))
                    i += 3
            else:
                b += s[i].encode()
                i += 1
        return b.decode()

    return {unescape(k[1:]): json.loads(unescape(v[1:])) for k, v in zip(data[::2], data[1::2])}




# The client idmd.send_as() runs as another uid: sends each line of stdin (a JSON-RPC request, or
# a batch) on one connection, reads one reply line for it, and prints [[reply, seconds from sending
# to the reply], ...] as JSON.
PEER_CLIENT = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rwb")
out = []
for line in sys.stdin.buffer:
    start = time.monotonic()
    f.write(line)
    f.flush()
    reply = json.loads(f.readline())
    out.append([reply, time.monotonic() - start])
print(json.dumps(out))
"""

_running = []


def _kill_leftovers():
    for p in _running:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_kill_leftovers)


class RpcError(Exception):
    def __init__(self, error):
        super().__init__(json.dumps(error))
        self.error = error
        self.code = error.get("code")
        self.reason = (error.get("data") or {}).get("reason")


class Connection:
    """One Unix stream connection (to idmd's socket or its userdb socket), closed on exit."""

    def __init__(self, path, timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_message(self, end):
        """The next message up to end (not included), parsed as JSON; None when the server
        closed the connection."""
        while end not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(end, 1)
        return json.loads(msg)


class Client(Connection):
    """One JSON-RPC connection to idmd."""

    _ids = itertools.count(1)

    def recv_line(self, timeout=None):
        """The next reply line as parsed JSON; None when the server closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        return self.recv_message(b"\n")

    def is_closed(self, timeout=60.0):
        """True if the server closed the connection (after any pending lines are read); False if
        it did not within timeout (which only turns a hang into a failure)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def request(self, method, params=None, id=None):
        if id is None:
            id = next(self._ids)
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_raw(json.dumps(msg).encode() + b"\n")
        reply = self.recv_line()
        if reply is None:
            raise ConnectionError("idmd closed the connection")
        assert reply.get("id") == id, f"reply id {reply.get('id')!r} != {id!r}: {reply}"
        return reply

    def call(self, method, params=None):
        """The result, or raises RpcError."""
        reply = self.request(method, params)
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    def error(self, method, params=None):
        """The error object of a call that must fail."""
        reply = self.request(method, params)
        if "error" not in reply:
            raise AssertionError(f"{method} succeeded unexpectedly: {reply['result']!r}")
        return reply["error"]


class Idmd:
    """A real idmd process with its own socket, state directory and config."""

    def __init__(self, config="", tmp=None, pg_schema=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="idm-test-")
        self.owns_tmp = tmp is None
        self.socket = os.path.join(self.tmp, "run", "socket")
        self.state = os.path.join(self.tmp, "state")
        self.config = os.path.join(self.tmp, "idmd.conf")
        self.log_path = os.path.join(self.tmp, "idmd.log")
        self.proc = None
        # pg_schema: another idmd's, to share its store (two devices on one database).
        self.pg_schema = (pg_schema or postgresql_schema(self.tmp)) if TEST_PG else None
        self.write_config(config)

    def write_config(self, config):
        """(Re)writes the configuration file: the base, config, generous rate limits for the
        classes config leaves out, and on PostgreSQL the [store] of this idmd's schema."""
        with open(self.config, "w") as f:
            f.write(BASE_CONFIG + config + generous_rate_limits(config))
            if self.pg_schema:
                f.write(postgresql_store_config(self.pg_schema))

    def table(self, name):
        """{key: parsed JSON record} of one table of the store, read by a client of its own: mdb_dump
        (LMDB allows a reader while idmd runs), or psql on PostgreSQL."""
        if not self.pg_schema:
            return mdb_table(self.state, name)
        rows = psql_json(self.pg_schema, "SELECT coalesce(json_agg(json_build_array(convert_from(key, 'UTF8'), "
                                         "convert_from(value, 'UTF8')) ORDER BY key), '[]') FROM idm_records "
                                         f"WHERE tbl = {STORE_TABLES.index(name)}")
        return {k: json.loads(v) for k, v in rows}

    def signing_keys(self):
        """{kid: key record} of the signing keys as idmd keeps them: the files of keys/ on LMDB,
        records of the meta table on PostgreSQL."""
        if not self.pg_schema:
            d = os.path.join(self.state, "keys")
            keys = {}
            for name in os.listdir(d):
                with open(os.path.join(d, name)) as f:
                    keys[name.removesuffix(".key")] = json.load(f)
            return keys
        return {k.removeprefix("signing-key:"): v for k, v in self.table("meta").items()
                if k.startswith("signing-key:")}

    def store_arg(self):
        """The store as store-inspect takes it: the state directory, or postgresql:CONNINFO."""
        if not self.pg_schema:
            return self.state
        return f"postgresql:{TEST_PG} options='-c search_path={self.pg_schema}'"

    def stored_bytes(self):
        """Every byte the store holds: the LMDB file (stop idmd first), or every key and value of
        the PostgreSQL tables."""
        if not self.pg_schema:
            with open(os.path.join(self.state, "data.mdb"), "rb") as f:
                return f.read()
        rows = psql_json(self.pg_schema, "SELECT coalesce(json_agg(json_build_array(encode(key, 'base64'), "
                                         "encode(value, 'base64'))), '[]') FROM idm_records")
        import base64
        return b"\n".join(base64.b64decode(k) + b" " + base64.b64decode(v) for k, v in rows)

    def args(self):
        return [IDMD, "--config", self.config, "--state-dir", self.state, "--socket", self.socket,
                "--log-level", "debug"]

    def start(self, wait=True, extra_env=None, args=None):
        env = dict(os.environ)
        env.update(extra_env or {})
        if getattr(self, "log", None):
            self.log.close()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args or self.args(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=env)
        _running.append(self.proc)
        if wait:
            self.wait_ready()
        return self

    def start_measured(self, quarantine_mb):
        """start() with a small ASan quarantine, for tests that read idmd's memory: memory idmd
        freed is then not counted as used."""
        options = os.environ.get("ASAN_OPTIONS", "") + f":quarantine_size_mb={quarantine_mb}"
        return self.start(extra_env={"ASAN_OPTIONS": options})

    def wait_ready(self, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"idmd exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.call("getServerInfo")
                return
            except (FileNotFoundError, ConnectionRefusedError, socket.timeout):
                time.sleep(0.02)
        raise RuntimeError(f"idmd did not become ready:\n{self.log_text()}")

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Stops idmd; returns its exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("idmd did not stop in time")
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        """Stops idmd in order (so sanitizers get to report leaks), then fails the test if a
        sanitizer reported anything in idmd's log."""
        problems = []
        try:
            if self.proc and self.proc.poll() is None:
                try:
                    self.stop()
                except AssertionError as e:  # a hang on SIGTERM is a failure, not a detail
                    problems.append(str(e))
            if getattr(self, "log", None):
                self.log.close()
            if any("Sanitizer" in l or "runtime error:" in l for l in self.log_text().splitlines()):
                problems.append("sanitizer report in idmd's log")
            if problems:
                raise AssertionError("; ".join(problems) + ":\n" + self.log_text())
        finally:
            self.kill()
            if self.owns_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_purged(self, timeout=120.0):
        """Waits until the background purge of deleted customers' records is done (getStats
        store.purgesPending): deleteCustomer leaves what only a walk finds to it."""
        deadline = time.monotonic() + timeout
        while self.call("getStats")["store"]["purgesPending"] > 0:
            if time.monotonic() > deadline:
                raise AssertionError("the purge of deleted customers' records did not finish")
            time.sleep(0.05)

    def client(self, timeout=60.0):
        return Client(self.socket, timeout=timeout)

    def call(self, method, params=None):
        with self.client() as c:
            return c.call(method, params)

    def error(self, method, params=None):
        with self.client() as c:
            return c.error(method, params)

    def open_to_others(self):
        """The temporary directory is private to root: lets unprivileged clients reach the socket."""
        for d in (self.tmp, os.path.dirname(self.socket)):
            os.chmod(d, 0o755)

    def send_as(self, uid, requests, gid=None, groups=None):
        """Sends requests (JSON-RPC request objects, or batches as lists of them) in order on one
        connection from a client running as uid and gid (default: the same number as uid; see
        run_as() for groups), each once the previous one was answered. Returns
        [(reply, seconds from sending to the reply), ...], one per request."""
        self.open_to_others()
        stdin = "".join(json.dumps(r) + "\n" for r in requests)
        p = run_as(uid, uid if gid is None else gid, [sys.executable, "-c", PEER_CLIENT, self.socket],
                   groups=groups, input=stdin, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"the client as uid {uid} failed with {p.returncode}:\n{p.stderr}")
        return [(reply, elapsed) for reply, elapsed in json.loads(p.stdout)]

    def call_as(self, uid, calls, gid=None, groups=None):
        """Calls [method, params] pairs in order on one connection as another uid (as send_as());
        returns the reply objects. The request ids are the indexes in calls."""
        requests = [{"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                    for i, (method, params) in enumerate(calls)]
        return [reply for reply, _ in self.send_as(uid, requests, gid=gid, groups=groups)]


def median_latencies(idmd, cases, n=200, uid=None):
    """Sends each of cases ({name: (method, params)}) n times, interleaved, on one connection: as
    root, or as uid through send_as(). Returns ({name: median seconds from sending to the reply},
    {name: [reply, ...]}). For reports and generous bounds only: timings here are noisy."""
    requests = [{"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(list(cases.values()) * n)]
    if uid is None:
        timed = []
        with idmd.client() as c:
            for r in requests:
                start = time.perf_counter()
                reply = c.request(r["method"], r["params"], id=r["id"])
                timed.append((reply, time.perf_counter() - start))
    else:
        timed = idmd.send_as(uid, requests)
    names = list(cases) * n
    replies = {name: [reply for (reply, _), k in zip(timed, names) if k == name] for name in cases}
    medians = {name: statistics.median(t for (_, t), k in zip(timed, names) if k == name) for name in cases}
    return medians, replies


class IdmdTestCase(unittest.TestCase):
    """Starts one idmd per test (self.idmd); subclasses may set CONFIG."""

    CONFIG = ""

    def setUp(self):
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start()

    def assertError(self, error, code, reason=None):
        self.assertEqual(error.get("code"), code, error)
        if reason is not None:
            self.assertEqual((error.get("data") or {}).get("reason"), reason, error)

    def create_publisher(self, **kw):
        params = {"name": "Test Publisher", "allowedRedirectUris": ["https://app.example.com/cb"]}
        params.update(kw)
        return self.idmd.call("createPublisher", params)


FAKE_SENDMAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-sendmail")


def fake_sendmails(args):
    """The pids of the fake sendmails running with these first arguments (a kill of idmd leaves
    the one in flight running: it is in its own process group and finishes on its own)."""
    r = subprocess.run(["pgrep", "-f", f"{FAKE_SENDMAIL} {args}"], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def mail_config(maildir):
    """The [mail] section that delivers every message to maildir, through the fake sendmail."""
    return f"[mail]\nmail_command = {FAKE_SENDMAIL} {maildir} -t -i\nfrom = idm@example.com\n"


class Mailbox:
    """The messages idmd's outbox delivered through the fake sendmail into a directory, parsed
    by Python's email package."""

    def __init__(self, idmd, maildir):
        self.idmd = idmd
        self.maildir = maildir
        self.seen = 0

    def files(self):
        return sorted((f for f in os.listdir(self.maildir) if f.endswith(".eml")), key=lambda f: int(f[:-4]))

    def new(self, timeout=120.0):
        """The messages delivered since the last call, once the outbox is empty: a message leaves
        the outbox only after the fake sendmail wrote it and exited 0."""
        import email
        import email.policy
        deadline = time.monotonic() + timeout
        while self.idmd.call("getStats")["outbox"]["depth"] > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the outbox still holds mail; {len(self.files())} delivered")
            time.sleep(0.05)
        out = []
        for name in self.files()[self.seen:]:
            with open(os.path.join(self.maildir, name), "rb") as f:
                out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
        self.seen += len(out)
        return out


def run_as(uid, gid, argv, groups=None, **kw):
    """Runs argv as another uid/gid, for role tests: no supplementary groups, or exactly
    `groups` (comma-separated gids)."""
    group_arg = f"--groups={groups}" if groups else "--clear-groups"
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", group_arg] + argv, **kw)


def main():
    unittest.main(verbosity=2)
