#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The store in PostgreSQL, under meson test --setup=postgresql only (tests/pg/with-cluster.sh
starts the cluster): what idmd --check-config finds, tables of a newer idmd refused, a password
in [store] connection refused and never logged, the database going away and coming back (503
store_unavailable within [store] timeout, then service again without a restart), the database
killed (kill -9) under a write load losing no acknowledged write, an LMDB store moved in with
idmctl migrate-store, and two idmd instances -- two devices -- on one database: registered on
one, signed in on the other, one winner when both rotate one refresh token at once, failures on
both adding up to one lockout, a customer deleted on one gone on the other, one signing key (a
JWT of either verifies on the other, a rotation on one reaches the other), one instance
sweeping, one delivering the shared outbox."""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import unittest

from idmtest import FAKE_SENDMAIL, IDMCTL, STORE_TABLES, TEST_PG, Idmd, RpcError, main

PASSWORD = "correct horse 9"


def jwt_kid(jwt):
    header = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def pg_ctl(action):
    subprocess.run([os.environ["IDM_TEST_PG_CTL"], action], check=True, stdout=subprocess.DEVNULL)


def psql(schema, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", TEST_PG, "-c", f"SET search_path = {schema}; {sql}"],
                   check=True, stdout=subprocess.DEVNULL)


@unittest.skipUnless(TEST_PG, "PostgreSQL only (meson test --setup=postgresql)")
class Postgresql(unittest.TestCase):
    def new(self, config="", **kw):
        d = Idmd(config, **kw)
        self.addCleanup(d.cleanup)
        return d

    def check_config(self, d):
        return subprocess.run(d.args() + ["--check-config"], capture_output=True, text=True, timeout=60)

    def test_check_config_and_newer_tables(self):
        d = self.new()
        p = self.check_config(d)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("# [store] postgresql: connected to PostgreSQL 15", p.stdout)
        self.assertIn("no idmd tables yet; idmd makes them when it starts", p.stdout)
        d.start()
        d.stop()
        p = self.check_config(d)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('tables of version 1 (this idmd: 1), store stamp {"version":2}', p.stdout)
        # Tables made by a newer idmd: said, and refused at start, with a clear message.
        psql(d.pg_schema, "UPDATE idm_schema SET version = 99")
        p = self.check_config(d)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("made by a newer idmd", p.stdout)
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("tables were made by a newer idmd than this one; refusing to start", p.stderr)

    def test_password_in_connection_refused_unlogged(self):
        d = self.new()
        with open(d.config, "a") as f:
            f.write(f"\n[store]\nconnection = {TEST_PG} password=hunter2\n")
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("invalid value '(not shown)' for key 'connection' in [store]", p.stderr)
        self.assertIn("PGPASSFILE", p.stderr)
        self.assertNotIn("hunter2", p.stderr)

    def test_database_away_and_back(self):
        d = self.new("[store]\ntimeout = 2s\n").start()
        pub = d.call("createPublisher", {"name": "P"})["publisherId"]
        s = d.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        pg_ctl("stop")
        try:
            for method, params in [("getCustomer", {"jwt": s["jwt"]}),
                                   ("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub}),
                                   ("registerCustomer", {"email": "b@example.com", "password": PASSWORD,
                                                         "publisherId": pub})]:
                start = time.monotonic()
                with self.assertRaises(RpcError) as e:
                    d.call(method, params)
                self.assertEqual((e.exception.code, e.exception.reason), (503, "store_unavailable"), method)
                self.assertLess(time.monotonic() - start, 10, method)
            # What needs no store is served all along, getStats and idmctl status say why, and
            # the log says it once for the episode.
            self.assertIn("version", d.call("getServerInfo"))
            store = d.call("getStats")["store"]
            self.assertEqual((store["backend"], store["reachable"]), ("postgresql", False))
            p = subprocess.run([IDMCTL, "--socket", d.socket, "status"], capture_output=True, text=True, timeout=60)
            self.assertIn("PostgreSQL, CANNOT BE REACHED", p.stdout)
            self.assertEqual(d.log_text().count("Cannot reach the PostgreSQL store"), 1, d.log_text()[-3000:])
        finally:
            pg_ctl("start")
        # Back without a restart of idmd: the connections are made again.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.assertEqual(d.call("getCustomer", {"jwt": s["jwt"]})["email"], "a@example.com")
                break
            except RpcError as e:
                if e.reason != "store_unavailable" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        d.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertTrue(d.call("getStats")["store"]["reachable"])
        self.assertEqual(d.log_text().count("The PostgreSQL store is reachable again."), 1)
        self.assertEqual(d.log_text().count("Cannot reach the PostgreSQL store"), 1)
        self.assertEqual(d.stop(), 0)

    def test_database_killed_under_write_load_loses_nothing_acknowledged(self):
        """Registrations from four clients while PostgreSQL is killed (kill -9 of the postmaster
        and every server process at once: nothing flushed, crash recovery from its WAL at the
        restart) and comes back: every registration that was answered with a result is there
        afterwards; the others were answered 503."""
        d = self.new("[store]\ntimeout = 2s\n").start()
        pub = d.call("createPublisher", {"name": "P"})["publisherId"]
        acked, refused, errors = [], [], []
        stop = threading.Event()

        def client(n):
            try:
                with d.client(timeout=60) as c:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        r = c.request("registerCustomer", {"email": f"u{n}-{i}@example.com", "password": PASSWORD,
                                                           "publisherId": pub})
                        if "result" in r:
                            acked.append(r["result"]["customerId"])
                        else:
                            assert r["error"]["code"] == 503, r
                            refused.append(r["error"]["data"]["reason"])
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        time.sleep(1.0)
        before = len(acked)
        pg_ctl("kill")
        time.sleep(1.0)
        pg_ctl("start")
        deadline = time.monotonic() + 30
        while len(acked) < before + 20:      # writes acknowledged after the restart, too
            self.assertLess(time.monotonic(), deadline, (len(acked), refused[-5:]))
            time.sleep(0.1)
        stop.set()
        for th in threads:
            th.join(60)
        self.assertEqual(errors, [])
        self.assertGreater(before, 0)
        self.assertTrue(refused, "no request met the database away: the test proved nothing")
        self.assertLessEqual(set(refused), {"store_unavailable", "unavailable"})

        listed, cursor = set(), None
        while True:
            page = d.call("listCustomers", {"publisherId": pub, "limit": 1000, **({"cursor": cursor} if cursor else {})})
            listed |= {c["customerId"] for c in page["items"]}
            cursor = page["cursor"]
            if not cursor:
                break
        self.assertEqual(set(acked) - listed, set(), "acknowledged registrations lost")
        print(f"{len(acked)} registrations acknowledged, {len(refused)} refused while the database was away",
              file=sys.stderr)

    def test_migrate_store_from_lmdb(self):
        """A device's LMDB store moved into PostgreSQL with idmctl migrate-store (which runs idmd
        --migrate-store): every record comes over, customers sign in with their passwords, tokens
        signed before verify (the key files became records of the store), on a second idmd of the
        store too; an idmd still running on the directory, or a database that is not empty, is
        refused."""
        old = self.new()
        old.pg_schema = None            # this one keeps its store in LMDB
        old.write_config("")
        old.start()
        pub = old.call("createPublisher", {"name": "P"})["publisherId"]
        sessions = [old.call("registerCustomer", {"email": f"c{i}@example.com", "password": PASSWORD,
                                                  "publisherId": pub}) for i in range(30)]
        new = self.new()
        migrate = lambda: subprocess.run(new.args() + ["--migrate-store", old.state], capture_output=True,
                                         text=True, timeout=120)
        p = migrate()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"An idmd is running on {old.state}: stop it first.", p.stderr)
        self.assertEqual(old.stop(), 0)

        # A key file it may not use (readable by others): refused before anything is copied, so
        # the database stays empty and the next try (below) succeeds.
        keydir = os.path.join(old.state, "keys")
        key_file = os.path.join(keydir, sorted(os.listdir(keydir))[0])
        os.chmod(key_file, 0o644)
        p = migrate()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"Failed to read the signing keys in {old.state}/keys", p.stderr)
        self.assertIn("nothing was copied", p.stderr)
        os.chmod(key_file, 0o600)

        # The operator's verb: idmctl migrate-store DIR CONFIG runs the same (idmd from $IDMD).
        p = subprocess.run([IDMCTL, "migrate-store", old.state, new.config], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, IDMD=new.args()[0]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("every table's count matches", p.stdout)
        self.assertIn("Copied 30 records of table customers.", p.stderr)
        self.assertIn("Copied 1 signing keys", p.stdout)
        new.start()
        other = self.new(pg_schema=new.pg_schema).start()
        for i, s in enumerate(sessions):
            self.assertEqual(new.call("getCustomer", {"jwt": s["jwt"]})["email"], f"c{i}@example.com")
            self.assertEqual(other.call("getCustomer", {"jwt": s["jwt"]})["email"], f"c{i}@example.com")
        other.stop()
        new.call("login", {"email": "c7@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertIn("jwt", new.call("refreshToken", {"refreshToken": sessions[3]["refreshToken"]}))
        new.stop()

        p = migrate()                   # again: the database is not empty now
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("already holds records", p.stderr)

    def two(self, config=""):
        a = self.new(config).start()
        b = self.new(config, pg_schema=a.pg_schema).start()
        return a, b

    def test_two_devices_one_customer_base(self):
        a, b = self.two("[lockout]\ndeny = 4\n")
        pub = a.call("createPublisher", {"name": "P"})["publisherId"]
        a.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        on_b = b.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertEqual(b.call("getCustomer", {"jwt": on_b["jwt"]})["email"], "a@example.com")
        # A JWT of either verifies on the other: one signing key, in the store.
        on_a = a.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertEqual(b.call("getCustomer", {"jwt": on_a["jwt"]})["email"], "a@example.com")
        self.assertEqual(a.call("getCustomer", {"jwt": on_b["jwt"]})["email"], "a@example.com")
        self.assertEqual(a.call("getJwks")["keys"], b.call("getJwks")["keys"])

        # Failures on both add up to one lockout, seen by both.
        for d in (a, b, a, b):
            with self.assertRaises(RpcError) as e:
                d.call("login", {"email": "a@example.com", "password": "wrong horse 1", "publisherId": pub})
            self.assertEqual(e.exception.code, 401)
        for d in (a, b):
            self.assertTrue(d.call("getCustomerLockout", {"publisherId": pub, "email": "a@example.com"})["locked"])
            with self.assertRaises(RpcError) as e:
                d.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
            self.assertEqual(e.exception.code, 423)
        a.call("unlockCustomer", {"publisherId": pub, "email": "a@example.com"})
        b.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})

        # Deleted on A: gone on B.
        c = b.call("registerCustomer", {"email": "c@example.com", "password": PASSWORD, "publisherId": pub})
        a.call("deleteCustomer", {"publisherId": pub, "customerId": c["customerId"]})
        with self.assertRaises(RpcError) as e:
            b.call("login", {"email": "c@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertEqual(e.exception.code, 401)
        with self.assertRaises(RpcError) as e:
            b.call("refreshToken", {"refreshToken": c["refreshToken"]})
        self.assertEqual(e.exception.code, 401)

    def test_signing_keys_shared_and_rotated_across_devices(self):
        """Both devices started at once on a new database make one first key between them; a key
        rotated on one signs JWTs that the other verifies at once (it reads the keys again for an
        unknown kid), and a key revoked on one stops verifying on the other within a minute; a
        flood of JWTs naming made-up kids is refused without harm."""
        a = self.new()
        b = self.new(pg_schema=a.pg_schema)
        starts = [threading.Thread(target=d.start) for d in (a, b)]
        for t in starts:
            t.start()
        for t in starts:
            t.join(120)
        kids = lambda d: [k["kid"] for k in d.call("getJwks")["keys"]]
        self.assertEqual(len(kids(a)), 1)
        self.assertEqual(kids(a), kids(b))
        first = kids(a)[0]
        self.assertEqual(len(self.key_rows(a)), 1)

        pub = a.call("createPublisher", {"name": "P"})["publisherId"]
        old = a.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        second = a.call("rotateSigningKey")["kid"]
        self.assertNotEqual(second, first)
        new = a.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertEqual(jwt_kid(new["jwt"]), second)
        # B has not read the keys since: the unknown kid makes it look, and the JWT verifies.
        self.assertEqual(b.call("getCustomer", {"jwt": new["jwt"]})["email"], "a@example.com")
        self.assertEqual(kids(b), [second, first])
        self.assertEqual(b.call("getCustomer", {"jwt": old["jwt"]})["email"], "a@example.com")
        self.assertEqual(jwt_kid(b.call("login", {"email": "a@example.com", "password": PASSWORD,
                                                  "publisherId": pub})["jwt"]), second)

        # Made-up kids (signed by nobody's key): refused, however many, at most one read a second.
        forged = new["jwt"].split(".")
        for i in range(30):
            header = base64.urlsafe_b64encode(json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": f"x{i:015d}"})
                                              .encode()).rstrip(b"=").decode()
            with self.assertRaises(RpcError) as e:
                b.call("getCustomer", {"jwt": ".".join([header, forged[1], forged[2]])})
            self.assertEqual(e.exception.code, 401)

        # Revoked on B (a key that leaked): A's in-memory keys lose the old ones within a minute.
        third = b.call("rotateSigningKey", {"revokePrevious": True})
        self.assertEqual(third["revoked"], 2)
        self.assertEqual(len(self.key_rows(a)), 1)
        deadline = time.monotonic() + 60
        while kids(a) != [third["kid"]]:
            self.assertLess(time.monotonic(), deadline, kids(a))
            time.sleep(1)
        for jwt in (old["jwt"], new["jwt"]):
            with self.assertRaises(RpcError) as e:
                a.call("getCustomer", {"jwt": jwt})
            self.assertEqual(e.exception.code, 401)

    def test_one_instance_sweeps(self):
        """Of two devices on one database, one runs the expiry sweep for both (its advisory
        lock); the other never starts it while the first holds it."""
        a, b = self.two()
        line = "This instance runs the expiry sweep for every instance"
        deadline = time.monotonic() + 30
        while not any(line in d.log_text() for d in (a, b)):
            self.assertLess(time.monotonic(), deadline, "no instance took the sweep")
            time.sleep(0.2)
        time.sleep(3)       # both have tried by now (the first sweep comes 1 s after start)
        self.assertEqual([line in d.log_text() for d in (a, b)].count(True), 1)

    def test_sweep_taken_over_when_the_holder_stops(self):
        """When the instance that sweeps stops, its advisory lock goes with its connection, and
        the other takes the sweep over at its next try: what has expired is deleted by it."""
        devices = []
        for _ in range(2):
            d = self.new(pg_schema=devices[0].pg_schema if devices else None)
            d.start(args=d.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
            devices.append(d)
        a, b = devices
        line = "This instance runs the expiry sweep for every instance"
        deadline = time.monotonic() + 30
        while not any(line in d.log_text() for d in devices):
            self.assertLess(time.monotonic(), deadline, "no instance took the sweep")
            time.sleep(0.2)
        holder, other = (a, b) if line in a.log_text() else (b, a)
        self.assertNotIn(line, other.log_text())
        pub = holder.call("createPublisher", {"name": "P"})["publisherId"]
        holder.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertGreater(len(other.table("tokens")), 0)
        self.assertEqual(holder.stop(), 0)

        # After 101 days nothing of the session is left, and the one left running deleted it.
        other.call("testAdvanceClock", {"seconds": 101 * 86400})
        deadline = time.monotonic() + 60
        while other.table("tokens"):
            self.assertLess(time.monotonic(), deadline, "the sweep was not taken over")
            other.call("testAdvanceClock", {"seconds": 0, "sweep": True})
            time.sleep(0.2)
        self.assertIn(line, other.log_text())

    def test_counts_of_a_large_table_are_estimates(self):
        """getStats counts the records of each table while the table is small; above 100,000
        records by the planner's statistics it gives their estimates instead (a count would walk
        the whole table at every call), and says so."""
        d = self.new().start()
        d.call("createPublisher", {"name": "P"})
        stats = d.call("getStats")["store"]
        self.assertFalse(stats["entriesEstimated"])
        self.assertEqual(stats["entries"]["publishers"], 1)
        self.assertEqual(stats["entries"]["capture"], 0)

        capture = STORE_TABLES.index("capture")
        psql(d.pg_schema, f"INSERT INTO idm_records SELECT {capture}, convert_to('bulk-' || i, 'UTF8'), "
                          "'\\x7b7d'::bytea FROM generate_series(1, 120000) AS i; ANALYZE idm_records")
        stats = d.call("getStats")["store"]
        self.assertTrue(stats["entriesEstimated"])
        self.assertGreater(stats["entries"]["capture"], 108000)
        self.assertLess(stats["entries"]["capture"], 132000)

        psql(d.pg_schema, f"DELETE FROM idm_records WHERE tbl = {capture}; ANALYZE idm_records")
        stats = d.call("getStats")["store"]
        self.assertFalse(stats["entriesEstimated"])
        self.assertEqual(stats["entries"]["capture"], 0)
        self.assertEqual(stats["entries"]["publishers"], 1)

    def key_rows(self, d):
        return [k for k in d.table("meta") if k.startswith("signing-key:")]

    def test_refresh_token_at_both_at_once_has_one_winner(self):
        """The same refresh token presented to both devices at the same moment, 100 times: one
        successor each time, never two."""
        a, b = self.two()
        pub = a.call("createPublisher", {"name": "P"})["publisherId"]
        token = a.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD,
                                            "publisherId": pub})["refreshToken"]
        ca, cb = a.client(timeout=60), b.client(timeout=60)
        self.addCleanup(ca.close)
        self.addCleanup(cb.close)
        for attempt in range(100):
            barrier = threading.Barrier(2)
            replies = [None, None]

            def present(i, client):
                barrier.wait()
                replies[i] = client.request("refreshToken", {"refreshToken": token})

            threads = [threading.Thread(target=present, args=(i, c)) for i, c in enumerate((ca, cb))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            # Exactly one successor: the second use gets the same one (the rotated token's sealed
            # successor, as on one device within the same second) or 401, never a second family
            # branch.
            successors = {r["result"]["refreshToken"] for r in replies if "result" in r}
            self.assertEqual(len(successors), 1, (attempt, replies))
            for r in replies:
                if "error" in r:
                    self.assertEqual(r["error"]["code"], 401, replies)
            token = successors.pop()
        # The one chain is still good at its end.
        self.assertIn("jwt", a.call("refreshToken", {"refreshToken": token}))


    def test_one_instance_delivers_the_shared_outbox(self):
        """Mail queued on either device goes out once, by the device that holds the outbox's
        lock; when that one stops, the other takes the outbox over."""
        maildirs = {}
        devices = []
        for name in ("a", "b"):
            maildirs[name] = os.path.join(self.new().tmp, f"mail-{name}")
            os.mkdir(maildirs[name])
        config = lambda name: f"[mail]\nmail_command = {FAKE_SENDMAIL} {maildirs[name]} -t -i\nfrom = idm@example.com\n"
        a = self.new(config("a"))
        a.start(args=a.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        b = self.new(config("b"), pg_schema=a.pg_schema)
        b.start(args=b.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        devices = (a, b)
        vars_ = {"link": "https://app.example.com/reset?t=x", "expires": "in 30 minutes"}

        def delivered():
            return {n: sorted(f for f in os.listdir(d) if f.endswith(".eml")) for n, d in maildirs.items()}

        def wait_delivered(total, timeout=30):
            deadline = time.monotonic() + timeout
            while sum(len(v) for v in delivered().values()) < total:
                self.assertLess(time.monotonic(), deadline, delivered())
                time.sleep(0.1)

        # Mail queued on either goes out through the one that holds the outbox, once.
        b.call("testQueueMail", {"to": "one@example.com", "kind": "password-reset", "vars": vars_})
        a.call("testQueueMail", {"to": "two@example.com", "kind": "password-reset", "vars": vars_})
        wait_delivered(2)
        time.sleep(6)       # more than the scan interval of a shared outbox: nothing goes twice
        got = delivered()
        self.assertEqual(sorted(len(v) for v in got.values()), [0, 2], got)
        for d in devices:
            self.assertEqual(d.call("getStats")["outbox"]["depth"], 0)

        # The one that delivers stops: the other takes the outbox over.
        leader, other = (a, b) if got["a"] else (b, a)
        self.assertEqual(leader.stop(), 0)
        other.call("testQueueMail", {"to": "three@example.com", "kind": "password-reset", "vars": vars_})
        wait_delivered(3)
        self.assertEqual(len(delivered()["b" if other is b else "a"]), 1, delivered())

if __name__ == "__main__":
    main()
