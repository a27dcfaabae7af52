#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile clients, one after another against one idmd: a thousand connections opened and left
idle, slowloris (a byte a second), a 10 MiB line, deeply nested JSON, a batch of 100,000
requests, invalid UTF-8, and clients that hang up while their password hash is in flight. After
each, a well-behaved client is served (its median latency over 20 calls is printed beside the
baseline, and only a generous bound is asserted: timings are not what a test proves), the refused
input got its stable reason where a reply was due, and idmd's resident memory is back within
10 % of what it was before the first attack (plus one MiB for the allocator's slack). Under
sanitizers, whose allocator keeps what it once mapped, only a bound of 32 MiB of growth is
checked."""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from idmtest import IdmdTestCase, Idmd, main
from test_exhaustion import proc_status

NOBODY = 65534
SANITIZED = os.environ.get("IDM_TEST_SANITIZED") == "1"

# Runs as NOBODY: opens argv[2] connections to argv[1] and holds them (idle) until stdin ends;
# prints how many connect() calls succeeded.
HOLDER = r"""
import socket, sys
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
    except OSError:
        s.close()
        continue
    socks.append(s)
print(len(socks), flush=True)
sys.stdin.read()
"""


class HostileCase(IdmdTestCase):
    # Short timeouts, so that what idmd closes by itself is closed within the test.
    CONFIG = "\n[limits]\npartial_line_timeout = 2s\nidle_timeout = 5s\n"
    userdb = None       # the userdb socket, when HostileVarlink turns it on

    def make_idmd(self):
        return Idmd(self.CONFIG)

    def setUp(self):
        self.idmd = self.make_idmd()
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start_measured(quarantine_mb=1)
        os.chmod(self.idmd.tmp, 0o755)
        os.chmod(os.path.dirname(self.idmd.socket), 0o755)
        self.pub = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "alice@example.com", "password": "correct horse 9",
                                            "publisherId": self.pub})
        for _ in range(3):      # warm up: the allocator's arenas, the reply paths
            self.served()
        self.baseline_latency = self.served()
        self.baseline_rss = self.rss()

    def rss(self):
        return proc_status(self.idmd.proc.pid, "VmRSS")

    def served(self):
        """A well-behaved client's median latency for getServerInfo on a new connection (and,
        with the userdb on, for a user lookup there)."""
        times = []
        for _ in range(20):
            start = time.monotonic()
            with self.idmd.client(timeout=10) as c:
                self.assertIn("version", c.call("getServerInfo"))
            if self.userdb:
                reply = self.raw(LOOKUP, socket_path=self.userdb, end=b"\0")
                self.assertEqual(json.loads(reply)["error"], "io.systemd.UserDatabase.NoRecordFound")
            times.append(time.monotonic() - start)
        return statistics.median(times)

    def rss_bound(self):
        return self.baseline_rss + 32 * 1024 if SANITIZED else self.baseline_rss * 1.10 + 1024

    def after(self, attack):
        """Checks service and memory once an attack is over."""
        latency = self.served()
        deadline = time.monotonic() + 60     # only what a hang would take: no bound on speed
        while self.rss() > self.rss_bound() and time.monotonic() < deadline:
            time.sleep(0.2)     # connections closing, buffers going back
        rss = self.rss()
        print(f"\n{attack}: median {latency * 1000:.2f} ms (baseline {self.baseline_latency * 1000:.2f} ms), "
              f"VmRSS {rss} KiB (baseline {self.baseline_rss} KiB)", file=sys.stderr)
        self.assertLess(latency, max(1.0, self.baseline_latency * 50), attack)
        self.assertLessEqual(rss, self.rss_bound(), attack)

    def raw(self, data, read=True, timeout=30, socket_path=None, end=b"\n"):
        """Sends data on a new connection (to idmd's socket, or socket_path); returns the first
        reply (up to end), or b"" if idmd closed."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_path or self.idmd.socket)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass    # idmd refused and closed before taking it all
            if not read:
                return b""
            buf = b""
            try:
                while end not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except ConnectionResetError:
                pass
            return buf.split(end)[0]

    def reason(self, line):
        return json.loads(line)["error"]["data"]["reason"]

    def hold_idle(self, path, n):
        """n connections to path opened by an unprivileged user and left idle; then closed."""
        holder = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                   sys.executable, "-c", HOLDER, path, str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.kill)
        self.assertGreater(int(holder.stdout.readline()), 0)
        self.assertIn("version", self.idmd.call("getServerInfo"))      # served while they are held
        holder.stdin.close()
        holder.wait(30)


    def slowloris(self, path, data):
        """Sends data to path a byte a second (never its end); idmd must close the connection
        after partial_line_timeout and serve others meanwhile."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.settimeout(1)
            start = time.monotonic()
            for b in data:
                try:
                    s.send(bytes([b]))
                    if s.recv(65536) == b"":
                        return
                except socket.timeout:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    return
                if time.monotonic() - start > 1.5:
                    self.assertIn("version", self.idmd.call("getServerInfo"))
        self.fail(f"{data[:20]!r}..., a byte a second, was not cut off")


class Hostile(HostileCase):
    def test_attacks_one_after_another(self):
        # 1. A thousand connections, opened and left idle by an unprivileged user: the per-uid
        #    cap refuses most, the idle timeout closes the rest.
        self.hold_idle(self.idmd.socket, 1000)
        self.after("1000 idle connections")

        # 2. Slowloris: a request line, a byte a second, never finished: closed after
        #    partial_line_timeout, others served meanwhile.
        self.slowloris(self.idmd.socket, b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo"')
        self.after("slowloris")

        # 3. A 10 MiB line: refused with request_too_large as soon as it passes max_line.
        self.assertEqual(self.reason(self.raw(b"x" * (10 << 20) + b"\n")), "request_too_large")
        self.after("a 10 MiB line")

        # 4. Deeply nested JSON, within max_line.
        self.assertEqual(self.reason(self.raw(b"[" * 30000 + b"]" * 30000 + b"\n")), "too_deep")
        self.after("nesting 30000 deep")

        # 5. A batch of 100,000 requests (about 5 MiB): too large a line long before it is parsed.
        batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "getServerInfo"} for i in range(100000)])
        self.assertEqual(self.reason(self.raw(batch.encode() + b"\n")), "request_too_large")
        self.after("a batch of 100,000 requests")

        # 6. Invalid UTF-8 in a string and as a bare byte.
        for bad in (b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","params":{"x":"\xff\xfe"}}\n',
                    b'\xc3\x28\n'):
            self.assertEqual(self.reason(self.raw(bad)), "parse_error")
        self.after("invalid UTF-8")

        # 7. Clients that hang up while their password hash is in flight (a login each).
        login = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "login", "params": {
            "email": "alice@example.com", "password": "correct horse 9", "publisherId": self.pub}}).encode() + b"\n"
        for _ in range(50):
            self.raw(login, read=False)
        self.assertIn("jwt", self.idmd.call("login", {"email": "alice@example.com", "password": "correct horse 9",
                                                      "publisherId": self.pub}))
        self.after("50 logins abandoned mid-hash")


# A lookup of a user nobody has, on the userdb socket.
LOOKUP = json.dumps({"method": "io.systemd.UserDatabase.GetUserRecord",
                     "parameters": {"userName": "nobody-here", "service": "io.idm"}}).encode() + b"\0"


class HostileVarlink(HostileCase):
    """The same kinds of peers on the userdb socket (varlink: messages end with NUL, at most
    16 KiB; a bad one closes the connection without a reply)."""

    def make_idmd(self):
        tmp = tempfile.mkdtemp(prefix="idm-test-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        os.makedirs(os.path.join(tmp, "userdb"), mode=0o755)
        self.userdb = os.path.join(tmp, "userdb", "io.idm")
        # A publisher nobody has: every lookup answers NoRecordFound, which is all this needs.
        return Idmd(self.CONFIG + f"\n[userdb]\nsocket = {self.userdb}\npublisher = 123456789\n", tmp=tmp)

    def test_varlink_attacks_one_after_another(self):
        os.chmod(os.path.dirname(self.userdb), 0o755)
        self.hold_idle(self.userdb, 1000)
        self.after("1000 idle varlink connections")

        # Slowloris: a message a byte a second, never ended: closed after partial_line_timeout.
        self.slowloris(self.userdb, LOOKUP[:-1])
        self.after("varlink slowloris")

        # Too long (10 MiB), too deep, not UTF-8, not JSON: closed without a reply.
        for what, data in (("a 10 MiB message", b"x" * (10 << 20) + b"\0"),
                           ("nesting 8000 deep", b"[" * 8000 + b"]" * 8000 + b"\0"),
                           ("invalid UTF-8", b'{"method":"\xff\xfe"}\0'),
                           ("not JSON", b"{nope\0")):
            self.assertEqual(self.raw(data, socket_path=self.userdb, end=b"\0"), b"", what)
            self.after("varlink: " + what)

        # A flood of lookups on one connection: each answered (some as ServiceNotAvailable).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.userdb)
            s.sendall(LOOKUP * 5000)
            s.shutdown(socket.SHUT_WR)
            buf = b""
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
        errors = {json.loads(m)["error"] for m in buf.split(b"\0")[:-1]}
        self.assertEqual(len(buf.split(b"\0")) - 1, 5000)
        self.assertLessEqual(errors, {"io.systemd.UserDatabase.NoRecordFound",
                                      "io.systemd.UserDatabase.ServiceNotAvailable"})
        self.after("5000 pipelined varlink lookups")


if __name__ == "__main__":
    main()
