#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Rate and concurrency limits per method class through the real socket: a flooded class
accepts at most rate x time + burst and answers the rest at once with 429 rate_limited and
retryAfter, refused requests write nothing, other classes keep being served, the concurrency cap
holds (getStats' high-water mark), an unprivileged uid cannot escape its bucket by varying
customerIP or PAM's rhost while root gets a bucket per address or rhost (so one host cannot
throttle every ssh login), and the per-source table stays bounded however many sources there are.

Deterministic on a slow machine: bursts go out as one JSON-RPC batch, which idmd admits or
refuses in one go before any hash can finish, and the bounds allow for the time really taken."""

import json
import os
import subprocess
import sys
import time

from idmtest import Idmd, IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534

def batch(method, params_list, first_id=0):
    return [{"jsonrpc": "2.0", "id": first_id + i, "method": method, "params": p} for i, p in enumerate(params_list)]


class RateLimitTestCase(IdmdTestCase):
    EXTRA_ENV = None

    def setUp(self):
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(extra_env=self.EXTRA_ENV)
        p = self.create_publisher()
        self.pub = p["publisherId"]
        self.pub_token = p["publisherToken"]

    def register(self, email="alice@example.com"):
        return self.idmd.call("registerCustomer", {
            "email": email, "password": PASSWORD, "publisherId": self.pub, "locale": "en_GB", "country": "GB",
            "currency": "GBP"})

    def send_batch(self, requests, client=None):
        """Sends one batch line; returns (replies sorted by id, seconds from send to reply)."""
        own = client is None
        c = client or self.idmd.client()
        try:
            start = time.monotonic()
            c.send_raw(json.dumps(requests).encode() + b"\n")
            replies = c.recv_line()
            elapsed = time.monotonic() - start
        finally:
            if own:
                c.close()
        self.assertIsInstance(replies, list, replies)
        return sorted(replies, key=lambda r: r["id"]), elapsed

    def assertRateLimited(self, reply, cls, limit=None):
        self.assertError(reply["error"], 429, "rate_limited")
        data = reply["error"]["data"]
        self.assertIsInstance(data["retryAfter"], int)
        self.assertGreaterEqual(data["retryAfter"], 1)
        self.assertEqual(data["class"], cls)
        if limit:
            self.assertEqual(data["limit"], limit)

    def as_nobody(self, requests):
        """Sends one batch as an unprivileged uid; as send_batch()."""
        [(replies, elapsed)] = self.idmd.send_as(NOBODY, [requests])
        return sorted(replies, key=lambda r: r["id"]), elapsed


class Flood(RateLimitTestCase):
    # login: 5/s, burst 5. default: the production values, so "still served" means something.
    CONFIG = """
[ratelimit.login]
rate = 5
burst = 5
concurrency = 20

[ratelimit.default]
rate = 200
burst = 200
concurrency = 50
"""

    def test_flooded_class_stays_within_bound_and_writes_nothing(self):
        reg = self.register()
        tokens_per_session = self.idmd.call("getStats")["store"]["entries"]["tokens"]
        self.assertGreater(tokens_per_session, 0)
        before = self.idmd.call("getStats")
        me_before = self.idmd.call("getCustomer", {"jwt": reg["jwt"]})

        accepted = refused = 0
        seq = 0
        other = self.idmd.client()
        self.addCleanup(other.close)
        start = time.monotonic()
        # Waves of 20 logins, each from another customerIP (root is trusted, so every address has
        # its own bucket and only the class's bucket holds them back), for about 1.5 s.
        while time.monotonic() - start < 1.5:
            reqs = batch("login", [{"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub,
                                    "customerIP": f"198.51.100.{(seq + i) % 250}"} for i in range(20)], seq)
            seq += 20
            replies, _ = self.send_batch(reqs)
            for r in replies:
                if "result" in r:
                    accepted += 1
                else:
                    self.assertRateLimited(r, "login", "rate")
                    refused += 1
            # another class is served all along
            self.assertIn("version", other.call("getServerInfo"))
            time.sleep(0.05)    # pacing only: ~30 waves, each over the class's rate
        elapsed = time.monotonic() - start

        self.assertLessEqual(accepted, 5 * elapsed + 5, (accepted, elapsed))
        self.assertGreaterEqual(accepted, 5)            # at least the burst
        self.assertGreater(refused, 0)

        after = self.idmd.call("getStats")
        # every accepted login made one session, the refused ones nothing
        self.assertEqual(after["store"]["entries"]["tokens"] - before["store"]["entries"]["tokens"],
                         accepted * tokens_per_session)
        self.assertEqual(after["store"]["entries"]["customers"], before["store"]["entries"]["customers"])
        self.assertEqual(after["rateLimited"]["login"], refused)
        self.assertEqual(after["classes"]["login"]["rateLimited"], refused)
        self.assertEqual(after["rateLimited"]["default"], 0)
        self.assertEqual(after["methods"]["login"]["calls"], accepted + refused)
        self.assertEqual(after["classes"]["login"]["limits"], {"rate": 5.0, "burst": 5, "concurrency": 20})
        me_after = self.idmd.call("getCustomer", {"jwt": reg["jwt"]})
        self.assertIsNone(me_before["lastLoginDate"])
        self.assertIsNotNone(me_after["lastLoginDate"])

    def test_refused_without_doing_the_work(self):
        # Refused logins hash nothing and count no failure; admitted ones do both.
        reqs = batch("login", [{"email": f"u{i}@example.com", "password": PASSWORD, "publisherId": self.pub,
                                "customerIP": f"203.0.113.{i}"} for i in range(30)])
        replies, elapsed = self.send_batch(reqs)
        ok = [r for r in replies if r["error"]["code"] != 429]
        for r in ok:
            self.assertError(r["error"], 401, "unknown_user")
        for r in replies:
            if r["error"]["code"] == 429:
                self.assertRateLimited(r, "login", "rate")
        self.assertGreaterEqual(len(ok), 5)             # at least the burst
        self.assertLessEqual(len(ok), 5 * elapsed + 5)
        self.assertLess(len(ok), len(replies))          # some were refused: the test means something
        # only the admitted ones were counted as failures (unknown e-mails get lockout records)
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["lockouts"], len(ok))
        log = self.idmd.log_text()
        self.assertEqual(log.count("login refused for publisher"), len(ok))


class Registration(RateLimitTestCase):
    CONFIG = """
[ratelimit.registration]
rate = 2
burst = 4
concurrency = 10
"""

    def test_refused_registrations_write_nothing(self):
        reqs = batch("registerCustomer", [{
            "email": f"user{i}@example.com", "password": PASSWORD, "publisherId": self.pub, "locale": "en_GB",
            "country": "GB", "currency": "GBP", "customerIP": f"192.0.2.{i}"} for i in range(12)])
        replies, elapsed = self.send_batch(reqs)
        created = [r for r in replies if "result" in r]
        for r in replies:
            if "error" in r:
                self.assertRateLimited(r, "registration", "rate")
        self.assertGreaterEqual(len(created), 4)
        self.assertLessEqual(len(created), 2 * elapsed + 4)
        self.assertLess(len(created), len(replies))     # some were refused: the test means something
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["customers"], len(created))


class Concurrency(RateLimitTestCase):
    # Costly hashes on one worker: admitted logins stay in flight while the batch is dispatched.
    CONFIG = """
[passwords]
argon2_opslimit = 2
argon2_memlimit = 32M
workers = 1

[ratelimit.login]
rate = 1000
burst = 1000
concurrency = 3
"""

    def test_concurrency_cap(self):
        # Ten end users behind root (PAM in sshd, say): ten sources, one class cap.
        self.register()
        reqs = batch("login", [{"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub,
                                "customerIP": f"192.0.2.{i}"} for i in range(10)])
        replies, _ = self.send_batch(reqs)
        ok = [r for r in replies if "result" in r]
        busy = [r for r in replies if "error" in r]
        for r in busy:
            self.assertRateLimited(r, "login", "concurrency")
            self.assertEqual(r["error"]["data"]["retryAfter"], 1)
        # a batch is dispatched in one go: exactly the cap was admitted
        self.assertEqual(len(ok), 3)
        self.assertEqual(len(busy), 7)
        stats = self.idmd.call("getStats")
        self.assertLessEqual(stats["classes"]["login"]["inFlightMax"], 3)
        self.assertEqual(stats["classes"]["login"]["inFlight"], 0)
        self.assertEqual(stats["classes"]["login"]["concurrencyLimited"], 7)
        self.assertEqual(stats["rateLimited"]["login"], 7)
        # once they are done, the slots are free again
        replies, _ = self.send_batch(reqs[:3])
        self.assertTrue(all("result" in r for r in replies), replies)

    def test_one_source_takes_half(self):
        # One source may hold half of the class's places (here 1 of 3): the rest stays for others.
        self.register()
        mine = {"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub}
        reqs = batch("login", [mine] * 5 + [dict(mine, customerIP="192.0.2.99")])
        replies, _ = self.send_batch(reqs)
        self.assertIn("result", replies[0])
        for r in replies[1:5]:
            self.assertRateLimited(r, "login", "concurrency")
        self.assertIn("result", replies[5], "another source still gets a place")

    def test_many_connections(self):
        # The same from 12 connections at once: whatever the interleaving, never above the cap.
        self.register()
        clients = [self.idmd.client() for _ in range(12)]
        for i, c in enumerate(clients):
            c.send_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "login", "params": {
                "email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub,
                "customerIP": f"192.0.2.{i}"}}).encode() + b"\n")
        replies = [c.recv_line() for c in clients]
        for c in clients:
            c.close()
        for r in replies:
            if "error" in r:
                self.assertRateLimited(r, "login", "concurrency")
        self.assertGreaterEqual(sum("result" in r for r in replies), 3)
        self.assertLessEqual(self.idmd.call("getStats")["classes"]["login"]["inFlightMax"], 3)


class AuthenticationIsRateLimited(RateLimitTestCase):
    # Guessing credentials must cost the guesser: the caller's bucket is charged before a JWT is
    # verified or a publisherToken looked up, and a failed authentication keeps the token it
    # took. default: burst 3 (1 per source), refilled once in 100 s: nothing refills meanwhile.
    CONFIG = """
[ratelimit.default]
rate = 0.01
burst = 3
concurrency = 50
"""

    def setUp(self):
        # No publisher: root's own requests would use up the class's few tokens.
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start()

    def assertAuthLimited(self, replies):
        self.assertError(replies[0]["error"], 401, "invalid_token")
        for r in replies[1:]:
            self.assertRateLimited(r, "default", "rate")

    def test_bad_jwt_is_limited(self):
        replies, _ = self.as_nobody(batch("getCustomer", [{"jwt": f"eyJhbGciOiJFZERTQSJ9.e30.{i:04d}"}
                                                          for i in range(12)]))
        self.assertAuthLimited(replies)

    def test_bad_publisher_token_is_limited(self):
        replies, _ = self.as_nobody(batch("listOffers", [{"publisherToken": f"guess-{i:04d}"} for i in range(12)]))
        self.assertAuthLimited(replies)


class PerSource(RateLimitTestCase):
    # Per source: half the class, burst 10 and 0.5/s. Each test has its own idmd.
    CONFIG = """
[ratelimit.login]
rate = 1
burst = 20
concurrency = 100
"""

    def logins(self, n, ip=lambda i: f"192.0.2.{i}"):
        return batch("login", [{"email": "nobody@example.com", "password": PASSWORD, "publisherId": self.pub,
                                **({"customerIP": ip(i)} if ip else {})} for i in range(n)])

    def count(self, replies):
        admitted = [r for r in replies if r["error"]["code"] != 429]
        for r in replies:
            if r["error"]["code"] == 429:
                self.assertRateLimited(r, "login", "rate")
        return len(admitted)

    def test_unprivileged_uid_cannot_escape_by_varying_customerIP(self):
        replies, elapsed = self.as_nobody(self.logins(20))
        admitted = self.count(replies)
        for r in replies:
            if r["error"]["code"] != 429:
                self.assertError(r["error"], 401, "invalid_credentials")
        self.assertGreaterEqual(admitted, 10)
        self.assertLessEqual(admitted, 10 + 0.5 * elapsed)     # its uid's bucket only
        # root, meanwhile, still gets the other half of the class
        replies, _ = self.send_batch(self.logins(10, ip=lambda i: f"198.51.100.{i}"))
        self.assertGreaterEqual(self.count(replies), 9)

    def test_root_gets_a_bucket_per_address(self):
        replies, elapsed = self.send_batch(self.logins(20))
        self.assertGreaterEqual(self.count(replies), 20 - 1)   # more than one source's share (10)
        self.assertGreaterEqual(self.idmd.call("getStats")["rateLimitSources"]["current"], 20)

    def test_root_without_address_is_one_source(self):
        replies, elapsed = self.send_batch(self.logins(20, ip=None))
        admitted = self.count(replies)
        self.assertGreaterEqual(admitted, 10)
        self.assertLessEqual(admitted, 10 + 0.5 * elapsed)


class PamRhost(RateLimitTestCase):
    """pam_idm in sshd calls as root for every remote user: a trusted caller's PAM rhost is the
    source, so one attacking host cannot use up the logins of all the others."""
    # Per source: half the class, a burst of 20 and 0.005/s; the class 40 and 0.01/s. At these
    # rates the buckets refill by less than a token within a test: the counts are exact.
    CONFIG = """
[ratelimit.login]
rate = 0.01
burst = 40
concurrency = 100
"""

    def pam_logins(self, rhosts, first_id=0):
        return batch("pamAuthenticate", [{"publisherId": self.pub, "user": "alice@example.com",
                                          "password": PASSWORD, "service": "sshd", "rhost": h}
                                         for h in rhosts], first_id)

    def admitted(self, replies):
        """How many logins went through; all others must be refused by the rate limit."""
        for r in replies:
            if "error" in r:
                self.assertRateLimited(r, "login", "rate")
        return sum("result" in r for r in replies)

    def test_root_is_limited_per_rhost(self):
        self.register()
        # one host's 30 attempts: only its own share (half the class's burst) gets through
        replies, elapsed = self.send_batch(self.pam_logins(["203.0.113.9"] * 30))
        admitted = self.admitted(replies)
        self.assertGreaterEqual(admitted, 20)
        self.assertLessEqual(admitted, 20 + 0.005 * elapsed)
        # logins from other hosts (an IPv4 address, an IPv6 /64, a host name) each get their own
        # share, left alone by the first host's flood
        others = ["198.51.100.7"] * 5 + ["2001:db8:1:2::10"] * 5 + ["client.example.net"] * 5
        replies, _ = self.send_batch(self.pam_logins(others, 100))
        for r in replies:
            self.assertIn("result", r, r)
        # and the first host is still held back
        replies, _ = self.send_batch(self.pam_logins(["203.0.113.9"], 200))
        self.assertEqual(self.admitted(replies), 0, replies)
        stats = self.idmd.call("getStats")
        self.assertEqual(stats["rateLimited"]["login"], 30 - admitted + 1)
        self.assertGreaterEqual(stats["rateLimitSources"]["current"], 4)

    def test_unprivileged_caller_cannot_escape_by_varying_rhost(self):
        self.register()
        # an ordinary uid naming 30 different hosts is still one source: its uid
        replies, elapsed = self.as_nobody(self.pam_logins([f"192.0.2.{i}" for i in range(30)]))
        admitted = self.admitted(replies)
        self.assertGreaterEqual(admitted, 20)
        self.assertLessEqual(admitted, 20 + 0.005 * elapsed)


class BoundedSources(RateLimitTestCase):
    CONFIG = """
[ratelimit]
sources = 64
"""
    # AddressSanitizer keeps freed memory in quarantine (256 MiB by default), which would
    # look like growth; a small quarantine keeps the measurement meaningful.
    EXTRA_ENV = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}

    @staticmethod
    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def flood_sources(self, first, n):
        # Batches smaller than the table: on PostgreSQL a batch's members are in flight together,
        # and a source with a call in flight is not evicted (a fuller table refuses with 429).
        with self.idmd.client() as c:
            for start in range(first, first + n, 50):
                reqs = batch("login", [{"email": "x@example.com", "password": "x", "publisherId": "000000000",
                                        "customerIP": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"}
                                       for i in range(start, min(start + 50, first + n))])
                replies, _ = self.send_batch(reqs, client=c)
                for r in replies:
                    self.assertError(r["error"], 404, "not_found")

    def test_table_stays_bounded(self):
        self.flood_sources(0, 2000)
        rss_warm = self.rss_kib(self.idmd.proc.pid)
        self.flood_sources(2000, 20000)
        rss = self.rss_kib(self.idmd.proc.pid)
        stats = self.idmd.call("getStats")
        src = stats["rateLimitSources"]
        self.assertEqual(src["capacity"], 64)
        self.assertLessEqual(src["current"], 64)
        self.assertGreaterEqual(src["evicted"], 22000 - 64)
        print(f"RSS {rss_warm} KiB after 2000 sources, {rss} KiB after 22000", file=sys.stderr)
        # 20000 more sources than the table holds; an unbounded table would hold them all.
        # Generous, as sanitizer builds still keep some freed memory around.
        sanitized = "asan" in subprocess.run(["ldd", os.environ.get("IDMD", "idmd")], capture_output=True,
                                             text=True).stdout
        self.assertLess(rss - rss_warm, (64 if sanitized else 16) * 1024)


if __name__ == "__main__":
    main()
