#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""idmd as a process: restart with data intact, one daemon per state directory, stale and live
sockets, SIGTERM, socket activation, configuration errors, schema versions, a full store."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from idmtest import IDMD, TEST_PG, Client, Idmd, IdmdTestCase, main, skip_on_postgresql

PASSWORD = "correct horse 9"


def connect_when_listening(path, timeout=120.0):
    """A Client on path, once something listens there (systemd-socket-activate binds first, then
    listens, then starts idmd on the first connection)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(path)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Daemon(unittest.TestCase):
    def new(self, config="", **kw):
        d = Idmd(config, **kw)
        self.addCleanup(d.cleanup)
        return d

    def fill_store(self, c, ids=None):
        """Creates large publishers until the store is full (503 store_full); returns how many
        were created, and adds their ids to ids."""
        created = 0
        while True:
            reply = c.request("createPublisher", {"name": "n" * 200, "allowedRedirectUris":
                              [f"https://host{i}.example/{'p' * 1000}" for i in range(30)]})
            if "error" in reply:
                self.assertEqual(reply["error"]["code"], 503, reply)
                self.assertEqual(reply["error"]["data"]["reason"], "store_full")
                return created
            created += 1
            if ids is not None:
                ids.append(reply["result"]["publisherId"])
            self.assertLess(created, 10000)

    def test_restart_keeps_data(self):
        d = self.new().start()
        p = d.call("createPublisher", {"name": "Durable", "allowedRedirectUris": []})
        d.call("addOffer", {"publisherToken": p["publisherToken"], "offerId": "O1"})
        kid = d.call("getStats")["keys"]["active"]
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual([x["name"] for x in d.call("listPublishers")["items"]], ["Durable"])
        self.assertEqual(d.call("listOffers", {"publisherToken": p["publisherToken"]})["items"][0]["offerId"], "O1")
        self.assertEqual(d.call("getStats")["keys"]["active"], kid)

    def test_kill9_loses_nothing_acknowledged(self):
        d = self.new().start()
        ids = [d.call("createPublisher", {"name": f"P{i}"})["publisherId"] for i in range(20)]
        d.stop(signal.SIGKILL)
        d.start()
        self.assertEqual(sorted(x["publisherId"] for x in d.call("listPublishers")["items"]), sorted(ids))

    def test_sigterm_removes_socket_and_exits_zero(self):
        d = self.new().start()
        self.assertTrue(os.path.exists(d.socket))
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(d.socket))
        self.assertIn("Stopped", d.log_text())
        d.start()
        self.assertEqual(d.stop(signal.SIGINT), 0)

    def test_second_daemon_on_same_state_dir_refuses(self):
        d = self.new().start()
        other_sock = os.path.join(d.tmp, "other.sock")
        p = subprocess.run([IDMD, "--config", d.config, "--state-dir", d.state, "--socket", other_sock],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Another idmd", p.stderr)
        self.assertIn(str(d.proc.pid), p.stderr)
        self.assertFalse(os.path.exists(other_sock))
        self.assertIn("version", d.call("getServerInfo"))

    def test_live_socket_not_stolen(self):
        d = self.new().start()
        e = self.new()
        p = subprocess.run([IDMD, "--config", e.config, "--state-dir", e.state, "--socket", d.socket],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("in use", p.stderr)
        self.assertIn("version", d.call("getServerInfo"))

    def test_stale_socket_replaced(self):
        d = self.new().start()
        d.stop(signal.SIGKILL)
        self.assertTrue(os.path.exists(d.socket))  # left behind by the crash
        d.start()
        self.assertIn("version", d.call("getServerInfo"))

    def test_not_a_socket_refused(self):
        d = self.new()
        os.makedirs(os.path.dirname(d.socket), exist_ok=True)
        open(d.socket, "w").close()
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("not a socket", p.stderr)

    def test_socket_directory_created_and_mode(self):
        d = self.new().start()
        st = os.stat(d.socket)
        self.assertEqual(st.st_mode & 0o777, 0o666)

    def test_socket_activation(self):
        d = self.new()
        os.makedirs(os.path.dirname(d.socket), exist_ok=True)
        d.start(wait=False, args=["systemd-socket-activate", "-l", d.socket] + d.args())
        # systemd-socket-activate binds first, then listens, then starts idmd on the first
        # connection: the file may exist a moment before a connection is accepted.
        c = connect_when_listening(d.socket)
        with c:
            info = c.call("getServerInfo")
            self.assertEqual(info["protocolVersion"], 1)
        self.assertEqual(d.stop(), 0)

    def test_notify_under_socket_activation(self):
        """What the service manager hears (Type=notify, WatchdogSec=): READY=1 with a STATUS= line
        once idmd serves, WATCHDOG=1 from the event loop at half the watchdog period, and
        STOPPING=1 on SIGTERM, read from the NOTIFY_SOCKET the test provides."""
        d = self.new()
        os.makedirs(os.path.dirname(d.socket), exist_ok=True)
        notify_path = os.path.join(d.tmp, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        self.addCleanup(notify.close)
        d.start(wait=False, args=["systemd-socket-activate", "-l", d.socket, "-E", f"NOTIFY_SOCKET={notify_path}",
                                  "-E", "WATCHDOG_USEC=400000"] + d.args())
        c = connect_when_listening(d.socket)
        with c:
            c.call("getServerInfo")
        messages = []
        notify.settimeout(60)
        while sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(notify.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        self.assertRegex(ready, r"STATUS=Serving on ")
        d.proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages[-1]:
            messages.append(notify.recv(4096).decode())
        self.assertEqual(d.proc.wait(timeout=30), 0)

    def test_check_config(self):
        """idmd --check-config prints every key with where its value came from (a file's line, the
        command line, or the default), loads back to the same values, and exits non-zero for a
        configuration idmd would refuse."""
        d = self.new("[limits]\nmax_line = 2048\n\n[locales]\ncidr = 192.0.2.0/24 PL\n")
        p = subprocess.run(d.args() + ["--check-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        max_line = next(n for n, l in enumerate(open(d.config).read().splitlines(), 1) if l.startswith("max_line"))
        self.assertIn(f"max_line = 2K  ; {d.config}:{max_line}", lines)
        self.assertIn(f"socket_path = {d.socket}  ; --socket", lines)
        self.assertIn("max_depth = 32  ; default", lines)
        self.assertTrue(any(l.startswith("# cidr: ") and d.config in l for l in lines), p.stdout)
        self.assertIn("cidr = 192.0.2.0/24 PL", lines)
        # What it prints is a configuration that reads back the same.
        again = os.path.join(d.tmp, "again.conf")
        with open(again, "w") as f:
            f.write(p.stdout)
        q = subprocess.run([IDMD, "--config", again, "--check-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(q.returncode, 0, q.stderr)
        strip = lambda out: [l.split("  ; ")[0] for l in out.splitlines() if not l.startswith("#")]
        self.assertEqual(strip(q.stdout), strip(p.stdout))
        # Refused, with the line.
        bad = self.new("[limits]\nmax_line = lots\n")
        p = subprocess.run(bad.args() + ["--check-config"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"idmd\.conf:\d+: invalid value 'lots' for key 'max_line'")

    def test_sighup_reloads_what_may_change(self):
        """SIGHUP: [lockout] (and the other live sections) change at once; a key that needs a
        restart is named in the log and not applied; a file that no longer loads changes nothing."""
        d = self.new("[lockout]\ndeny = 5\n").start()
        pub = d.call("createPublisher", {"name": "P"})["publisherId"]
        d.call("registerCustomer", {"email": "a@example.com", "password": "correct horse 9", "publisherId": pub})
        base = open(d.config).read()
        with open(d.config, "w") as f:
            f.write(base.replace("deny = 5", "deny = 2") + "\n[store]\nmap_size_max = 8G\n")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 120
        while "Configuration reloaded" not in d.log_text():
            self.assertLess(time.monotonic(), deadline, d.log_text())
            time.sleep(0.05)
        self.assertIn("applied only at the next start: map_size_max = 8G", d.log_text())
        for _ in range(2):
            d.error("login", {"email": "a@example.com", "password": "wrong horse 1", "publisherId": pub})
        lock = d.call("getCustomerLockout", {"publisherId": pub, "email": "a@example.com"})
        self.assertTrue(lock["locked"], lock)
        # A broken file: the running configuration stays, and idmd serves on.
        with open(d.config, "w") as f:
            f.write(base + "\n[limits]\nmax_line = lots\n")
        d.proc.send_signal(signal.SIGHUP)
        while "keeping the running configuration" not in d.log_text():
            self.assertLess(time.monotonic(), deadline, d.log_text())
            time.sleep(0.05)
        self.assertIn("version", d.call("getServerInfo"))
        self.assertEqual(d.stop(), 0)

    def test_no_config_file_uses_embedded_defaults(self):
        d = self.new()
        d.start(args=[IDMD, "--state-dir", d.state, "--socket", d.socket, "--config", "/dev/null"])
        self.assertIn("version", d.call("getServerInfo"))

    def test_missing_explicit_config_refused(self):
        d = self.new()
        p = subprocess.run([IDMD, "--config", os.path.join(d.tmp, "nope.conf"), "--state-dir", d.state,
                            "--socket", d.socket], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("nope.conf", p.stderr)

    def test_bad_config_value_refused_with_location(self):
        d = self.new("[limits]\nmax_line = lots\n")
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("idmd.conf:5", p.stderr)
        self.assertIn("max_line", p.stderr)
        self.assertFalse(os.path.exists(d.socket))

    def test_unknown_config_key_warns(self):
        d = self.new("[limits]\nfrobnicate = 1\n")
        d.start()
        self.assertIn("idmd.conf:5", d.log_text())
        self.assertIn("frobnicate", d.log_text())

    def test_drop_in_overrides(self):
        d = self.new("[limits]\nmax_batch = 2\n")
        os.makedirs(d.config + ".d")
        with open(os.path.join(d.config + ".d", "10-more.conf"), "w") as f:
            f.write("[limits]\nmax_batch = 3\n")
        d.start()
        with d.client() as c:
            batch = [{"jsonrpc": "2.0", "id": i, "method": "getServerInfo"} for i in range(4)]
            # the drop-in's 3, not the main file's 2: three are answered, four are too many
            c.send_raw(json.dumps(batch[:3]).encode() + b"\n")
            replies = c.recv_line()
            self.assertIsInstance(replies, list)
            self.assertEqual(sorted(r["id"] for r in replies if "result" in r), [0, 1, 2])
            c.send_raw(json.dumps(batch).encode() + b"\n")
            reply = c.recv_line()
            self.assertIsInstance(reply, dict)
            self.assertEqual(reply["error"]["data"]["reason"], "batch_too_large")

    @staticmethod
    def schema_stamp(d):
        """The schema stamp of a stopped idmd's store, as stored (the meta record schema_version)."""
        return json.dumps(d.table("meta")["schema_version"], separators=(",", ":"))

    @staticmethod
    def set_schema_stamp(d, stamp):
        """Rewrites the schema stamp of a stopped idmd's store with a client of the store's own
        (mdb_dump/mdb_load, or psql)."""
        if d.pg_schema:
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", TEST_PG, "-c",
                            f"UPDATE {d.pg_schema}.idm_records SET value = convert_to('{stamp}', 'UTF8') "
                            "WHERE tbl = 0 AND key = convert_to('schema_version', 'UTF8')"], check=True)
            return
        dump = subprocess.run(["mdb_dump", "-s", "meta", d.state], capture_output=True, text=True, check=True).stdout
        old = Daemon.schema_stamp(d).encode().hex()
        assert old in dump, dump
        subprocess.run(["mdb_load", "-s", "meta", d.state], input=dump.replace(old, stamp.encode().hex()), text=True,
                       check=True)

    def test_newer_schema_refused(self):
        d = self.new().start()
        d.stop()
        self.assertEqual(self.schema_stamp(d), '{"version":2}')       # STORE_SCHEMA_VERSION
        self.set_schema_stamp(d, '{"version":99}')
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("schema version 99", p.stderr)

    def test_older_schema_migrated(self):
        d = self.new().start()
        d.stop()
        self.assertIn("Created a new store", d.log_text())
        self.set_schema_stamp(d, '{"version":1}')
        d.start()
        d.stop()
        self.assertIn("Migrated the store in", d.log_text())
        self.assertIn("from schema version 1 to 2", d.log_text())
        self.assertEqual(self.schema_stamp(d), '{"version":2}')

    @skip_on_postgresql("its memory map grows, then the store is full at map_size_max")
    def test_store_grows_then_full(self):
        d = self.new("[store]\nmap_size_initial = 1M\nmap_size_max = 3M\n").start()
        with d.client() as c:
            created = self.fill_store(c)
            self.fill_store(c)          # refused again at once: still one episode
            self.assertEqual(d.log_text().count("is full: writes are refused"), 1, d.log_text()[-2000:])
            stats = c.call("getStats")
            self.assertGreater(stats["store"]["grown"], 0)
            # the refused write left nothing behind
            self.assertEqual(len(c.call("listPublishers")["items"]), created)
            self.assertEqual(stats["store"]["entries"]["publisher_tokens"], created)
            self.assertIn("version", c.call("getServerInfo"))
        d.stop()
        d.start()
        self.assertEqual(len(d.call("listPublishers")["items"]), created)

    @skip_on_postgresql("a full file system under the LMDB file")
    def test_disk_full(self):
        """A real ENOSPC from a small tmpfs in a private mount namespace (skipped if unavailable),
        shared with two filler files: writes are refused with 503 store_full and one log line per
        episode, reads go on, and each time a filler is removed (space returns) writes succeed
        again without a restart; nothing acknowledged is lost, also across a restart."""
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            self.skipTest("needs root, unshare and nsenter")
        tmp = tempfile.mkdtemp(prefix="idm-full-")
        self.addCleanup(shutil.rmtree, tmp, True)
        # The namespace is held by a process of its own, so that idmd can be restarted in it
        # (nsenter execs idmd: the pid is idmd's); the test reaches the tmpfs through
        # /proc/PID/root of that process.
        holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs -o size=2M tmpfs {tmp} && head -c 400K /dev/zero > {tmp}/filler1 && "
             f"head -c 400K /dev/zero > {tmp}/filler2 && echo ready && exec sleep 600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(holder.communicate)
        self.addCleanup(holder.kill)
        if holder.stdout.readline().strip() != "ready":
            self.skipTest("cannot mount tmpfs in a mount namespace: " + holder.stderr.read())
        in_ns = lambda name: f"/proc/{holder.pid}/root{tmp}/{name}"
        d = self.new("[store]\nmap_size_initial = 1M\nmap_size_max = 64M\n")
        args = ["nsenter", "-t", str(holder.pid), "-m", "--", IDMD, "--config", d.config,
                "--state-dir", os.path.join(tmp, "state"), "--socket", d.socket]
        d.start(args=args)
        full_line, writable_line = "is full: writes are refused with 503 store_full", "takes writes again"
        ids = []
        with d.client() as c:
            for episode in (1, 2):
                self.assertGreater(self.fill_store(c, ids), 0)
                self.fill_store(c, ids)     # refused again at once: the same episode
                self.assertEqual(d.log_text().count(full_line), episode, d.log_text()[-2000:])
                self.assertEqual(d.log_text().count(writable_line), episode - 1)
                # reads go on
                self.assertEqual(sorted(x["publisherId"] for x in c.call("listPublishers")["items"]), sorted(ids))
                self.assertEqual(c.call("getPublisher", {"publisherId": ids[-1]})["publisherId"], ids[-1])
                self.assertIn("version", c.call("getServerInfo"))
                self.assertLess(c.call("getStats")["store"]["mapSize"], 64 << 20)  # the disk, not map_size_max
                # space returns: the next write succeeds, with no restart, and says so once
                os.unlink(in_ns(f"filler{episode}"))
                ids.append(c.call("createPublisher", {"name": f"after {episode}"})["publisherId"])
                self.assertEqual(d.log_text().count(writable_line), episode, d.log_text()[-2000:])
            self.assertEqual(d.log_text().count(full_line), 2)
        self.assertEqual(d.stop(), 0)
        d.start(args=args)
        self.assertEqual(sorted(x["publisherId"] for x in d.call("listPublishers")["items"]), sorted(ids))


class InFlight(IdmdTestCase):
    # A slow hash, so that the requests behind the login are still queued when SIGTERM comes.
    CONFIG = "\n[passwords]\nargon2_opslimit = 3\nargon2_memlimit = 32M\n"

    def test_sigterm_answers_pending_requests(self):
        pub = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "a@example.com", "password": "correct horse 9",
                                            "publisherId": pub, "locale": "en_GB", "country": "GB",
                                            "currency": "GBP"})
        with self.idmd.client() as c:
            lines = [{"jsonrpc": "2.0", "id": 0, "method": "login",
                      "params": {"email": "a@example.com", "password": "correct horse 9", "publisherId": pub}}]
            lines += [{"jsonrpc": "2.0", "id": i, "method": "getStats"} for i in range(1, 30)]
            c.send_raw(b"".join(json.dumps(l).encode() + b"\n" for l in lines))
            # wait until idmd has read them all: the login is hashing (a queued hash that no
            # worker has picked up yet is cancelled by SIGTERM, by design), the rest wait behind it
            with self.idmd.client() as probe:
                deadline = time.monotonic() + 60
                probes = 0
                while time.monotonic() < deadline:
                    stats = probe.call("getStats")       # counted once answered: from the next one on
                    # All 29 getStats answered (not counting the probe's own calls: on PostgreSQL
                    # the lines of one connection are dispatched one after the other), and the
                    # login on a worker (or already answered: a fast machine).
                    methods = stats["methods"]
                    if methods.get("getStats", {}).get("calls", 0) - probes >= 29 and \
                            (stats["workers"]["running"] >= 1 or methods.get("login", {}).get("calls", 0) >= 1):
                        break
                    probes += 1
                    time.sleep(0.01)
            self.idmd.proc.send_signal(signal.SIGTERM)
            got = []
            while True:
                line = c.recv_line()
                if line is None:
                    break
                got.append(line)
        # everything read before the signal is answered, in request order, the login included
        self.assertEqual([r["id"] for r in got], list(range(30)))
        self.assertIn("jwt", got[0]["result"])
        self.assertEqual(self.idmd.proc.wait(30), 0)


class Durability(IdmdTestCase):
    def test_kill9_after_every_kind_of_write(self):
        """Each acknowledged write survives kill -9: registration, a password change, a
        revocation, a lockout, a key rotation, consents."""
        pw, new_pw = "correct horse 9", "another horse 10"
        p = self.create_publisher()
        pub = p["publisherId"]
        self.idmd.call("setPublisherConsents", {"publisherToken": p["publisherToken"], "consents": [
            {"name": "terms", "label": "Terms", "required": True}]})
        r = self.idmd.call("registerCustomer", {"email": "a@example.com", "password": pw, "publisherId": pub,
                                                "locale": "en_GB", "country": "GB", "currency": "GBP",
                                                "consents": [{"name": "terms", "version": 1, "state": "accepted"}]})
        self.idmd.call("changePassword", {"jwt": r["jwt"], "oldPassword": pw, "newPassword": new_pw})
        other = self.idmd.call("login", {"email": "a@example.com", "password": new_pw, "publisherId": pub})
        self.idmd.call("revokeToken", {"token": other["refreshToken"]})
        self.idmd.call("registerCustomer", {"email": "b@example.com", "password": pw, "publisherId": pub,
                                            "locale": "en_GB", "country": "GB", "currency": "GBP",
                                            "consents": [{"name": "terms", "version": 1, "state": "accepted"}]})
        for _ in range(5):
            self.idmd.error("login", {"email": "b@example.com", "password": "wrong horse 1", "publisherId": pub})
        kid = self.idmd.call("rotateSigningKey")["kid"]

        self.idmd.stop(signal.SIGKILL)
        self.idmd.start()

        self.assertError(self.idmd.error("login", {"email": "a@example.com", "password": pw, "publisherId": pub}),
                         401, "invalid_credentials")
        login = self.idmd.call("login", {"email": "a@example.com", "password": new_pw, "publisherId": pub})
        self.assertIs(login["consentsUpdateRequired"], False)
        self.assertEqual(self.idmd.call("introspectToken", {"token": other["refreshToken"]}), {"active": False})
        self.assertTrue(self.idmd.call("introspectToken", {"token": r["refreshToken"]})["active"])
        self.assertTrue(self.idmd.call("getCustomerLockout", {"publisherId": pub, "email": "b@example.com"})["locked"])
        self.assertIn(kid, [k["kid"] for k in self.idmd.call("getJwks")["keys"]])
        self.assertEqual(self.idmd.call("getStats")["keys"]["active"], kid)


def register_and_log_in(idmd, logins):
    """A publisher with customer a@example.com (password PASSWORD), logged in that many times: a
    hash each. Returns the publisher."""
    p = idmd.call("createPublisher", {"name": "Hashes"})
    idmd.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": p["publisherId"]})
    for _ in range(logins):
        idmd.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": p["publisherId"]})
    return p


class HashEngines(IdmdTestCase):
    CONFIG = "[passwords]\nargon2_memlimit = 1M\nworkers = 2\nargon2_engine = libsodium\n"

    def test_libsodium_keeps_its_region_and_hashes_alike(self):
        """argon2_engine = libsodium: logins work, and libsodium hashes in the workers' kept
        regions too (idmd lends them through its mmap()); a hash made by one engine verifies
        after a restart with the other, and auto times both and says which it took."""
        p = register_and_log_in(self.idmd, 3)
        pw = PASSWORD
        self.assertError(self.idmd.error("login", {"email": "a@example.com", "password": pw + "x",
                                                   "publisherId": p["publisherId"]}), 401)
        workers = self.idmd.call("getStats")["workers"]
        self.assertEqual(workers["engine"], "libsodium")
        self.assertGreaterEqual(workers["memoryHeld"], 1 << 20)
        self.assertLessEqual(workers["memoryHeld"], workers["memoryBound"])

        def restart(config):
            self.assertEqual(self.idmd.stop(), 0)
            self.idmd.write_config(config)
            self.idmd.start()

        restart("[passwords]\nargon2_memlimit = 1M\nworkers = 2\nargon2_engine = libargon2\n")
        self.assertEqual(self.idmd.call("getStats")["workers"]["engine"], "libargon2")
        r = self.idmd.call("login", {"email": "a@example.com", "password": pw, "publisherId": p["publisherId"]})
        self.idmd.call("changePassword", {"jwt": r["jwt"], "oldPassword": pw, "newPassword": pw + "2"})

        restart("[passwords]\nargon2_memlimit = 1M\nworkers = 2\n")
        deadline = time.monotonic() + 60
        while "hashing with" not in self.idmd.log_text():
            self.assertLess(time.monotonic(), deadline, "no calibration line after 60 s")
            time.sleep(0.2)
        line = [l for l in self.idmd.log_text().splitlines() if "hashing with" in l][-1]
        self.assertRegex(line, r"m=1024 KiB, t=\d+: libargon2 with a kept region \d+ us, libsodium \d+ us per hash; "
                               r"hashing with (libargon2|libsodium)\.")
        self.assertEqual(self.idmd.call("getStats")["workers"]["engine"], line.split("hashing with ")[1].rstrip("."))
        self.idmd.call("login", {"email": "a@example.com", "password": pw + "2", "publisherId": p["publisherId"]})


class HashMemory(IdmdTestCase):
    # Both engines keep the region (HashEngines above for libsodium); this class uses libargon2.
    CONFIG = "[passwords]\nargon2_memlimit = 1M\nworkers = 2\nargon2_engine = libargon2\n"

    def test_hash_memory_held_then_given_back(self):
        """Each hashing thread keeps one Argon2 region of m bytes between hashes (getStats
        workers.memoryHeld, never above workers x m) and gives it back after 30 s without a hash."""
        p = register_and_log_in(self.idmd, 4)
        pw = PASSWORD
        workers = self.idmd.call("getStats")["workers"]
        self.assertEqual(workers["memoryBound"], 2 << 20)
        self.assertGreaterEqual(workers["memoryHeld"], 1 << 20)
        self.assertLessEqual(workers["memoryHeld"], workers["memoryBound"])
        deadline = time.monotonic() + 60
        while self.idmd.call("getStats")["workers"]["memoryHeld"] != 0:
            self.assertLess(time.monotonic(), deadline, "hash memory still held after 60 s idle")
            time.sleep(1)
        self.idmd.call("login", {"email": "a@example.com", "password": pw, "publisherId": p["publisherId"]})
        self.assertGreaterEqual(self.idmd.call("getStats")["workers"]["memoryHeld"], 1 << 20)
        self.assertEqual(self.idmd.call("getStats")["workers"]["engine"], "libargon2")
        self.assertNotIn("hashing with", self.idmd.log_text())  # named, not timed


    def test_hash_workers_are_nicer(self):
        """The worker threads (hashing, mail delivery) run 5 nice steps below the event loop, so
        hashes that keep the cores busy do not hold up requests that need no hash."""
        def nice(task):
            with open(f"/proc/{self.idmd.proc.pid}/task/{task}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[16])   # field 19, nice

        def comm(task):
            # A short-lived thread (the start-up dummy hash) may end between the listing and
            # the read; it is no worker, which live as long as idmd.
            try:
                with open(f"/proc/{self.idmd.proc.pid}/task/{task}/comm") as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None

        tasks = os.listdir(f"/proc/{self.idmd.proc.pid}/task")
        workers = [t for t in tasks if comm(t) == "idmd-worker"]
        self.assertEqual(len(workers), 3, [comm(t) for t in tasks])   # 2 hashing, 1 mail delivery
        main_nice = nice(str(self.idmd.proc.pid))
        for t in workers:
            self.assertEqual(nice(t), min(main_nice + 5, 19))


class ConnectionLimit(IdmdTestCase):
    CONFIG = "\n[limits]\nmax_connections = 3\nmax_connections_per_uid = 3\n"

    def test_global_connection_limit(self):
        clients = [self.idmd.client() for _ in range(3)]
        try:
            for c in clients:
                self.assertIn("result", c.request("getServerInfo"))
            with self.idmd.client() as extra:
                reply = extra.recv_line()
                self.assertError(reply["error"], 429, "too_many_connections")
                self.assertEqual(reply["error"]["message"], "too many connections")
                self.assertTrue(extra.is_closed())
            self.assertEqual(self.idmd.proc.poll(), None)
        finally:
            for c in clients:
                c.close()


if __name__ == "__main__":
    main()
