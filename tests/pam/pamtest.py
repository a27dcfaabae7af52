# SPDX-License-Identifier: MIT
"""Harness for pam_idm's tests: a real idmd (idmtest.Idmd) with a publisher and a customer, PAM
service files in a temporary directory for pam_wrapper, and runs of tests/pam/pam-drive (libpamtest
on the real libpam) whose output is parsed into results, messages, environment and pam_syslog
lines; a scan of pam-drive's memory after its transaction (drive_and_scan); a relay that records
what passes between the module and idmd (Relay), and scripted stand-ins for idmd. Nothing outside
the test's temporary directory is touched (pam_wrapper keeps its own copy of the service files
under /tmp and removes it).
"""

import contextlib
import fcntl
import glob
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import idmtest

PAM_IDM = os.environ.get("PAM_IDM", "pam_idm.so")
PAM_DRIVE = os.environ.get("PAM_DRIVE", "pam-drive")
PAM_WRAPPER_LIB = os.environ.get("PAM_WRAPPER_LIB", "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so")
PAM_WRAPPER_MODULES = os.environ.get("PAM_WRAPPER_MODULES", "/usr/lib/x86_64-linux-gnu/pam_wrapper")
NSS_WRAPPER_LIB = os.environ.get("NSS_WRAPPER_LIB", "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so")
PAM_MATRIX = os.path.join(PAM_WRAPPER_MODULES, "pam_matrix.so")
# Sets PAM items (PAM_AUTHTOK, ...) from the process environment: "a module stacked before".
PAM_SET_ITEMS = os.path.join(PAM_WRAPPER_MODULES, "pam_set_items.so")
SANITIZED = os.environ.get("IDM_TEST_SANITIZED") == "1"

PASSWORD = "Corr3ct-horse"
NOBODY = 65534
SYSLOG_RE = re.compile(r"SYSLOG\((\d)\): (.*)$")


def method_available(idmd, method):
    return method in idmd.call("getServerInfo").get("methods", [])


class Result:
    """What one pam-drive run printed."""

    def __init__(self, argv, proc, elapsed):
        self.argv = argv
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.results = []
        self.prompts = []
        self.infos = []
        self.errors = []
        self.env = {}
        self.faildelay = False
        self.stats = {}
        for line in self.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "result":
                op, _, code = rest.partition(" ")
                self.results.append((op, code))
            elif kind in ("prompt-off", "prompt-on"):
                self.prompts.append((kind, rest))
            elif kind == "info":
                self.infos.append(rest)
            elif kind == "error":
                self.errors.append(rest)
            elif kind == "env":
                name, _, value = rest.partition("=")
                self.env[name] = value
            elif kind == "faildelay":
                self.faildelay = True
            elif kind in ("fds-before", "fds-after", "heap-before", "heap-after"):
                self.stats[kind] = int(rest)
        self.syslog = []
        for line in self.stderr.splitlines():
            m = SYSLOG_RE.search(line)
            if m:
                self.syslog.append((int(m.group(1)), m.group(2)))

    def code(self, op):
        for o, c in self.results:
            if o == op:
                return c
        return None

    def logged(self, pattern):
        return any(re.search(pattern, msg) for _, msg in self.syslog)

    def __str__(self):
        return (f"argv: {' '.join(self.argv)}\nrc: {self.rc}\nelapsed: {self.elapsed:.2f}s\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


# pam_wrapper 1.1.4 picks its runtime directory, /tmp/pam.X, with an unlocked lstat() and mkdir()
# (and ignores EEXIST): two PAM clients starting at the same moment can end up sharing one and
# reading each other's service files. Every PAM client these tests start (pam-drive, pamtester,
# sshd and its per-connection re-exec) runs under this lock, taken with flock(2).
LOCK_PATH = "/tmp/idm-tests-pam-wrapper.lock"


def clean_stale_pam_wrapper_dirs():
    """Removes /tmp/pam.X directories whose process is gone (pam_wrapper only removes its own at a
    normal exit; a killed sshd or a valgrind run leaves one, and 62 of them stop pam_wrapper)."""
    for d in glob.glob("/tmp/pam.?"):
        try:
            with open(os.path.join(d, "pid")) as f:
                pid = int(f.read().strip() or "0")
        except (OSError, ValueError):
            continue
        if pid <= 0:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


@contextlib.contextmanager
def pam_wrapper_lock():
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        clean_stale_pam_wrapper_dirs()
    finally:
        os.close(fd)


def pam_env(svcdir, debuglevel=3):
    env = dict(os.environ)
    env.update(LD_PRELOAD=PAM_WRAPPER_LIB, PAM_WRAPPER="1", PAM_WRAPPER_SERVICE_DIR=svcdir,
               PAM_WRAPPER_DEBUGLEVEL=str(debuglevel))
    return env


# Mappings larger than this are not read: ASan's shadow memory (terabytes, reserved), never the
# heap of a PAM transaction.
SCAN_MAPPING_MAX = 256 * 1024 * 1024


def scan_memory(pid, needles):
    """How often each of needles (bytes) occurs in the writable memory of process pid (root reads
    /proc/PID/mem of its child). Needles that straddle two mappings are not found."""
    counts = dict.fromkeys(needles, 0)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or end - start > SCAN_MAPPING_MAX:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            for n in needles:
                counts[n] += data.count(n)
    return counts


def make_reachable(*paths):
    """Lets an unprivileged client (setpriv 65534) reach the test's files."""
    for p in paths:
        os.chmod(p, 0o755)


class PamTestCase(idmtest.IdmdTestCase):
    """One idmd per test with a publisher and a customer, and a pam_wrapper service directory."""

    EMAIL = "alice@example.com"
    NEEDS = ()   # idmd methods the test class needs: their absence is a failure, not a skip

    def setUp(self):
        super().setUp()
        for method in self.NEEDS:
            if not method_available(self.idmd, method):
                self.fail(f"idmd does not implement {method}")
        self.svcdir = os.path.join(self.idmd.tmp, "svc")
        os.mkdir(self.svcdir)
        make_reachable(self.idmd.tmp, os.path.dirname(self.idmd.socket), self.svcdir)
        self.publisher = self.create_publisher()["publisherId"]
        self.customer = self.register(self.EMAIL, PASSWORD)
        # The module reads /etc/idm/pam_idm.conf unless told otherwise: never the host's here.
        self.conf = self.write_conf("")

    def write_conf(self, text, name="pam_idm.conf"):
        path = os.path.join(self.idmd.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def register(self, email, password, publisher=None):
        return self.idmd.call("registerCustomer", {
            "email": email, "password": password, "publisherId": publisher or self.publisher,
            "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def idm(self, *opts, socket=None, publisher=None):
        """The module path and arguments for a service line."""
        args = [PAM_IDM, f"conf={self.conf}", f"socket={socket or self.idmd.socket}"]
        if publisher is not False:
            args.append(f"publisher={publisher or self.publisher}")
        return " ".join(args + list(opts))

    def service(self, name, *lines):
        path = os.path.join(self.svcdir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, 0o644)
        return name

    def idm_service(self, name, *opts, control="required", **kw):
        """A service with pam_idm alone in all four stacks."""
        return self.service(name, *[f"{t} {control} {self.idm(*opts, **kw)}"
                                    for t in ("auth", "account", "password", "session")])

    def matrix_passdb(self, *entries):
        path = os.path.join(self.idmd.tmp, "passdb")
        with open(path, "w") as f:
            for user, password, service in entries:
                f.write(f"{user}:{password}:{service}\n")
        os.chmod(path, 0o644)
        return path

    def drive_argv(self, service, user, *ops, pw=(), echo=(), rhost=None, tty=None, ruser=None, silent=False,
                   as_nobody=False, loop=None, wrapper=None, putenv=(), ruid=None, pause=False):
        argv = [PAM_DRIVE]
        for p in pw:
            argv += ["--pw", p]
        for e in echo:
            argv += ["--echo", e]
        for e in putenv:
            argv += ["--putenv", e]
        for flag, value in (("--rhost", rhost), ("--tty", tty), ("--ruser", ruser), ("--loop", loop),
                            ("--ruid", ruid)):
            if value is not None:
                argv += [flag, str(value)]
        if silent:
            argv.append("--silent")
        if pause:
            argv.append("--pause")
        argv += [service, user] + list(ops)
        if wrapper:
            argv = wrapper + argv
        if as_nobody:
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + argv
        return argv

    def drive(self, service, user, *ops, timeout=60, env=None, **kw):
        """putenv: NAME=VALUE strings put into the PAM environment before the first operation;
        ruid: the real uid pam-drive runs with, its effective uid staying 0 (a setuid-root program
        such as su, run by that user)."""
        argv = self.drive_argv(service, user, *ops, **kw)
        environ = pam_env(self.svcdir)
        environ.update(env or {})
        with pam_wrapper_lock():
            start = time.monotonic()
            proc = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
            elapsed = time.monotonic() - start
        return Result(argv, proc, elapsed)

    def _drive_piped(self, argv, env, timeout, on_line):
        """Runs pam-drive with pipes: on_line(line, proc) sees each output line as it comes and
        returns True to stop reading (then the rest is read after it). Returns the
        CompletedProcess and the seconds taken."""
        environ = pam_env(self.svcdir)
        environ.update(env or {})
        with pam_wrapper_lock(), tempfile.TemporaryFile("w+") as err:
            start = time.monotonic()
            proc = subprocess.Popen(argv, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                    text=True)
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
            try:
                out = []
                for line in proc.stdout:
                    out.append(line)
                    if on_line(line, proc):
                        break
                proc.stdin.close()
                out.append(proc.stdout.read())
                proc.wait()
            finally:
                killer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            elapsed = time.monotonic() - start
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, "".join(out), err.read()), elapsed

    def drive_and_scan(self, service, user, *ops, needles, timeout=120, env=None, **kw):
        """Runs pam-drive --pause: once its transaction has ended, counts how often each of needles
        (bytes) occurs in its writable memory (heap, stack, anonymous mappings: what the module may
        have left behind in the caller, freed or not). Returns (Result, {needle: count})."""
        argv = self.drive_argv(service, user, *ops, pause=True, **kw)
        counts = {}

        def on_line(line, proc):
            if line != "paused\n":
                return False
            counts.update(scan_memory(proc.pid, needles))
            return True

        done, elapsed = self._drive_piped(argv, env, timeout, on_line)
        if not counts:
            self.fail(f"pam-drive did not pause: {done.stdout}")
        done.stdout = done.stdout.replace("paused\n", "", 1)
        return Result(argv, done, elapsed), counts

    def drive_interactive(self, service, user, *ops, answer, timeout=60, env=None, **kw):
        """Runs pam-drive, where the "@stdin" answers (in pw= or echo=) are asked of
        answer(prompt line) when their prompt comes: for what the test learns only then."""
        argv = self.drive_argv(service, user, *ops, **kw)

        def on_line(line, proc):
            if line.startswith("prompt-"):
                text = answer(line.rstrip("\n"))
                if text is not None:
                    proc.stdin.write(text + "\n")
                    proc.stdin.flush()
            return False

        done, elapsed = self._drive_piped(argv, env, timeout, on_line)
        return self.assertDrive(Result(argv, done, elapsed), 0)

    def assertDrive(self, result, rc=0):
        self.assertEqual(result.rc, rc, str(result))
        self.assertNotIn("Sanitizer", result.stderr, str(result))
        self.assertNotIn("runtime error:", result.stderr, str(result))
        return result

    def ok(self, *args, **kw):
        """Runs pam-drive and requires every operation to give its expected code."""
        return self.assertDrive(self.drive(*args, **kw), 0)


class UnixServer:
    """A root-owned socket at path that runs self.connection(conn, number) in a thread of its own
    for each connection it accepts, numbered from 0. Subclasses set their state before calling
    __init__: the accepting starts there."""

    def __init__(self, path, mode=None):
        self.path = path
        self.accepted = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            number = self.accepted
            self.accepted += 1
            self.accept(number)
            threading.Thread(target=self.connection, args=(conn, number), daemon=True).start()

    def accept(self, number):
        """Called on the accepting thread before connection number is served."""

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Relay(UnixServer):
    """A root-owned socket in front of idmd's that passes every byte both ways and keeps a copy:
    what the module sent idmd and what it received. exchanges() pairs them up."""

    def __init__(self, path, upstream):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.data = {}          # connection number -> {"sent": bytes, "received": bytes}
        super().__init__(path)

    def accept(self, number):
        with self.lock:
            self.data[number] = {"sent": b"", "received": b""}

    def connection(self, conn, number):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with conn, up:
            try:
                up.connect(self.upstream)
            except OSError:
                return
            while True:
                ready, _, _ = select.select([conn, up], [], [], 120)
                if not ready:
                    return
                for s in ready:
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    # Kept before it is passed on: once the module has it, exchanges() shows it.
                    with self.lock:
                        self.data[number]["sent" if s is conn else "received"] += chunk
                    try:
                        (up if s is conn else conn).sendall(chunk)
                    except OSError:
                        return

    def exchanges(self):
        """[(method, params, reply object)] in the order of the connections."""
        out = []
        with self.lock:
            data = [self.data[n] for n in sorted(self.data)]
        for d in data:
            replies = {}
            for line in d["received"].splitlines():
                reply = json.loads(line)
                replies[json.dumps(reply.get("id"))] = reply
            for line in d["sent"].splitlines():
                req = json.loads(line)
                out.append((req["method"], req.get("params"), replies.get(json.dumps(req.get("id")))))
        return out


class FakeListener:
    """A root-owned socket that listens with backlog 0 and never accepts (connect timeouts)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(0)
        self.fillers = []
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except (BlockingIOError, InterruptedError):
                pass
            self.fillers.append(s)

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class FakeIdmd(UnixServer):
    """A scripted stand-in for idmd on a root-owned socket: answers JSON-RPC lines with
    self.handle(method, params) -> ("result", obj) or ("error", obj). calls lists (method, params),
    conns the connection (numbered from 0) each call came on. With idle_timeout it closes a
    connection that stays silent that long, as idmd does after 60 s."""

    def __init__(self, path, handle, idle_timeout=None):
        self.handle = handle
        self.idle_timeout = idle_timeout
        self.calls = []
        self.conns = []
        self.idle_closed = 0
        super().__init__(path, mode=0o666)

    def connection(self, conn, number):
        buf = b""
        with conn:
            conn.settimeout(self.idle_timeout)
            while True:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    self.idle_closed += 1
                    return
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    self.calls.append((req["method"], req["params"]))
                    self.conns.append(number)
                    kind, obj = self.handle(req["method"], req["params"])
                    reply = {"jsonrpc": "2.0", "id": req["id"], kind: obj}
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def methods(self):
        return [m for m, _ in self.calls]


def error(code, reason, **data):
    return "error", {"code": code, "message": reason, "data": dict(reason=reason, **data)}


def stop_process(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    unittest.main(verbosity=2)

