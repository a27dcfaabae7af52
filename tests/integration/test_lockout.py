#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Account lockout through the real socket: deny wrong passwords lock the account; then even the
right password is refused without hashing: 423 account_locked with retryAfter for root (admin
peers and the PAM path), 401 invalid_credentials for an unprivileged uid. Unknown e-mails are
treated alike; other accounts are not affected; the lock survives a restart; unlockCustomer and
`idmctl customer unlock` clear it and `idmctl customer show` shows it; repeat lockouts grow;
a successful login resets the count.

No test waits for a production unlock_time: the tests that wait for a lock to end configure
unlock_time = 4 s (max_unlock_time = 12 s) and poll for the end instead of sleeping for a fixed
time; what they assert about durations comes from the daemon (retryAfter, nextLockSeconds,
lockCount) or is a lower bound that a slow client cannot break."""

import json
import subprocess
import time

from idmtest import TEST_PG, IDMCTL, IdmdTestCase, main

PASSWORD = "correct horse 9"
WRONG = "wrong horse 9"
NOBODY = 65534


class LockoutTestCase(IdmdTestCase):
    CONFIG = """
[lockout]
deny = 5
fail_interval = 900
unlock_time = 600
max_unlock_time = 3600
"""

    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub = p["publisherId"]
        self.pub_token = p["publisherToken"]
        self.alice = self.register("alice@example.com")

    def register(self, email, pub=None):
        return self.idmd.call("registerCustomer", {
            "email": email, "password": PASSWORD, "publisherId": pub or self.pub, "locale": "en_GB",
            "country": "GB", "currency": "GBP"})

    def login_params(self, email="alice@example.com", password=PASSWORD, pub=None):
        return {"email": email, "password": password, "publisherId": pub or self.pub}

    def login_error(self, **kw):
        return self.idmd.error("login", self.login_params(**kw))

    def lock(self, email="alice@example.com", pub=None):
        """Five wrong passwords: each an ordinary 401."""
        for _ in range(5):
            e = self.login_error(email=email, password=WRONG, pub=pub)
            self.assertEqual(e["code"], 401, e)

    def assertLocked(self, error, max_retry=600):
        self.assertError(error, 423, "account_locked")
        retry = error["data"]["retryAfter"]
        self.assertIsInstance(retry, int)
        self.assertGreaterEqual(retry, 1)
        self.assertLessEqual(retry, max_retry)
        return retry

    def state(self, email="alice@example.com"):
        return self.idmd.call("getCustomerLockout", {"publisherId": self.pub, "email": email})

    def idmctl(self, *args, check=True):
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket] + list(args), capture_output=True, text=True,
                           timeout=60)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p


class Lockout(LockoutTestCase):
    def test_root_sees_423_and_the_right_password_is_refused_without_hashing(self):
        self.lock()
        retry = self.assertLocked(self.login_error(password=WRONG))
        self.assertGreater(retry, 590)
        self.assertLocked(self.login_error(password=PASSWORD))
        # the PAM path is told too
        self.assertLocked(self.idmd.error("pamAuthenticate", {"publisherId": self.pub, "user": "alice@example.com",
                                                              "password": PASSWORD}))
        # only the five wrong passwords were hashed: a locked attempt never reaches a worker
        self.assertEqual(self.idmd.log_text().count("login refused for publisher"), 5)
        stats = self.idmd.call("getStats")
        self.assertEqual(stats["lockouts"], 1)
        self.assertEqual(stats["store"]["entries"]["lockouts"], 1)
        # the locked attempts were not counted as failures
        st = self.state()
        self.assertEqual((st["locked"], st["failures"], st["lockCount"]), (True, 0, 1))
        self.assertEqual(st["customerId"], self.alice["customerId"])
        self.assertRegex(st["lockedUntil"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsNone(self.idmd.call("getCustomer", {"jwt": self.alice["jwt"]})["lastLoginDate"])

    def test_unprivileged_caller_gets_plain_401(self):
        wrong = ["login", self.login_params(password=WRONG)]
        right = ["login", self.login_params(password=PASSWORD)]
        replies = self.idmd.call_as(NOBODY, [wrong] * 6 + [right])
        for r in replies:
            self.assertError(r["error"], 401, "invalid_credentials")
            self.assertNotIn("retryAfter", r["error"]["data"])
        # root learns that it is locked
        self.assertLocked(self.login_error())

    def test_unknown_email_is_treated_alike(self):
        for _ in range(5):
            self.assertError(self.login_error(email="ghost@example.com"), 401, "unknown_user")
        self.assertLocked(self.login_error(email="ghost@example.com"))
        replies = self.idmd.call_as(NOBODY, [
            ["login", self.login_params(email="ghost@example.com")],
            ["login", self.login_params(email="alice@example.com", password=WRONG)]])
        for r in replies:
            self.assertError(r["error"], 401, "invalid_credentials")
        st = self.state("ghost@example.com")
        self.assertIsNone(st["customerId"])
        self.assertTrue(st["locked"])

    def test_other_accounts_are_not_affected(self):
        self.register("bob@example.com")
        other = self.create_publisher(name="Other")["publisherId"]
        self.register("alice@example.com", pub=other)
        self.lock()
        self.assertLocked(self.login_error())
        self.idmd.call("login", self.login_params(email="bob@example.com"))
        self.idmd.call("login", self.login_params(pub=other))
        # case does not matter: it is the same account
        self.assertLocked(self.login_error(email="ALICE@Example.com"))

    def test_lock_survives_restart(self):
        self.lock()
        before = self.assertLocked(self.login_error())
        self.idmd.stop()
        self.idmd.start()
        after = self.assertLocked(self.login_error())
        self.assertLessEqual(after, before)
        self.assertGreater(after, 500)
        self.assertTrue(self.state()["locked"])

    def test_success_resets_the_count(self):
        for _ in range(4):
            self.login_error(password=WRONG)
        self.assertEqual(self.state()["failures"], 4)
        self.idmd.call("login", self.login_params())
        self.assertEqual(self.state()["failures"], 0)
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["lockouts"], 0)
        for _ in range(4):
            self.login_error(password=WRONG)
        st = self.state()
        self.assertEqual((st["locked"], st["failures"]), (False, 4))
        self.idmd.call("login", self.login_params())

    def test_unlock_customer(self):
        self.lock()
        # by e-mail, as admin naming the publisher
        self.assertEqual(self.idmd.call("unlockCustomer", {"publisherId": self.pub, "email": "Alice@example.com"}), {})
        self.idmd.call("login", self.login_params())
        # by customerId, as the publisher (any local uid holding its token)
        self.lock()
        replies = self.idmd.call_as(NOBODY, [
            ["unlockCustomer", {"publisherToken": self.pub_token, "customerId": self.alice["customerId"]}]])
        self.assertEqual(replies[0]["result"], {})
        self.idmd.call("login", self.login_params())
        # unlocking an account that is not locked is fine; an unknown e-mail too (no oracle)
        self.assertEqual(self.idmd.call("unlockCustomer", {"publisherId": self.pub, "email": "alice@example.com"}), {})
        self.assertEqual(self.idmd.call("unlockCustomer", {"publisherId": self.pub, "email": "x@example.com"}), {})

    def test_unlock_customer_refusals(self):
        self.lock()
        other = self.create_publisher(name="Other")
        # another publisher cannot name our customer
        self.assertError(self.idmd.error("unlockCustomer", {"publisherToken": other["publisherToken"],
                                                            "customerId": self.alice["customerId"]}),
                         404, "not_found")
        self.assertError(self.idmd.error("unlockCustomer", {"publisherId": self.pub, "customerId": "1234567890"}),
                         404, "not_found")
        # exactly one way of naming the customer
        self.assertError(self.idmd.error("unlockCustomer", {"publisherId": self.pub}), -32602)
        self.assertError(self.idmd.error("unlockCustomer", {"publisherId": self.pub, "email": "alice@example.com",
                                                            "customerId": self.alice["customerId"]}), -32602)
        # an unprivileged peer without a publisher token may not
        replies = self.idmd.call_as(NOBODY, [
            ["unlockCustomer", {"publisherId": self.pub, "email": "alice@example.com"}],
            ["getCustomerLockout", {"publisherId": self.pub, "email": "alice@example.com"}]])
        for r in replies:
            self.assertError(r["error"], 403, "forbidden")
        self.assertLocked(self.login_error())

    def test_idmctl_customer_show_and_unlock(self):
        p = self.idmctl("customer", "show", "alice@example.com", "--publisher", self.pub)
        self.assertRegex(p.stdout, r"Locked:\s+no")
        self.lock()
        p = self.idmctl("customer", "show", "alice@example.com", "--publisher", self.pub)
        self.assertRegex(p.stdout, r"Locked:\s+yes, until \d{4}-")
        self.assertIn(self.alice["customerId"], p.stdout)
        p = self.idmctl("--json", "customer", "show", self.alice["customerId"], "--publisher", self.pub)
        self.assertTrue(json.loads(p.stdout)["locked"])
        p = self.idmctl("customer", "unlock", "alice@example.com", "--publisher", self.pub)
        self.assertIn("cleared", p.stdout)
        self.assertFalse(self.state()["locked"])
        self.idmd.call("login", self.login_params())
        # --publisher is required; other verbs do not take it
        p = self.idmctl("customer", "unlock", "alice@example.com", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--publisher", p.stderr)
        p = self.idmctl("publisher", "list", "--publisher", self.pub, check=False)
        self.assertEqual(p.returncode, 2)


    def test_guesses_in_flight_when_the_lock_falls_learn_nothing(self):
        """Regression: guesses already being hashed when the account locks must not tell which
        one was right. All are sent at once in one batch (verified in parallel, then answered):
        the right password among them gets the same 401 as the wrong ones."""
        batch = [{"jsonrpc": "2.0", "id": i, "method": "pamAuthenticate",
                  "params": {"publisherId": self.pub, "user": "alice@example.com", "password": WRONG}}
                 for i in range(11)]
        batch.append({"jsonrpc": "2.0", "id": 99, "method": "pamAuthenticate",
                      "params": {"publisherId": self.pub, "user": "alice@example.com", "password": PASSWORD}})
        with self.idmd.client() as c:
            c.send_raw(json.dumps(batch).encode() + b"\n")
            replies = {r["id"]: r for r in c.recv_line()}
        self.assertEqual(len(replies), 12)
        right = replies[99]
        self.assertNotIn("result", right)
        wrong_answers = {json.dumps(r["error"], sort_keys=True) for i, r in replies.items() if i != 99}
        self.assertIn(json.dumps(right["error"], sort_keys=True), wrong_answers, replies)
        if TEST_PG and right["error"]["code"] == 423:
            # On PostgreSQL the members' store reads interleave: those read after the lock
            # fell are answered 423, the right password among them, as the wrong ones.
            self.assertError(right["error"], 423, "account_locked")
        else:
            self.assertError(right["error"], 401, "invalid_credentials")
        # and the account is locked now
        self.assertLocked(self.login_error())


class RepeatLockouts(LockoutTestCase):
    # Short enough to wait for, long enough for a slow client: a lock lasts 4 s, doubling on
    # each repeat up to 12 s, and a lock that starts less than 12 s after the last one ended is a
    # repeat. Each step that must come before a lock ends has seconds of margin.
    UNLOCK = 4
    CAP = 12
    CONFIG = f"""
[lockout]
deny = 3
fail_interval = 900
unlock_time = {UNLOCK}
max_unlock_time = {CAP}
"""

    def lock(self, email="alice@example.com", pub=None):
        for _ in range(3):
            self.assertEqual(self.login_error(password=WRONG)["code"], 401)

    def wait_unlocked(self, since):
        """Polls until the lock ends; returns the seconds from since (time.monotonic(), taken
        before the lock began) until the end was seen: never less than the lock lasted."""
        deadline = time.monotonic() + 60
        while self.state()["locked"]:
            self.assertLess(time.monotonic(), deadline, "the lock did not end")
            time.sleep(0.1)
        return time.monotonic() - since

    def assertLasted(self, seconds, duration):
        # 0.5 s for the daemon's (realtime) and this test's (monotonic) clocks to disagree
        self.assertGreaterEqual(seconds, duration - 0.5)

    def test_lock_grows_on_repeat_up_to_the_cap(self):
        start = time.monotonic()
        self.lock()
        self.assertLocked(self.login_error(), max_retry=self.UNLOCK)
        st = self.state()
        self.assertEqual((st["lockCount"], st["nextLockSeconds"]), (1, 2 * self.UNLOCK))
        self.assertLasted(self.wait_unlocked(start), self.UNLOCK)
        # over, but the next lock (now) is a repeat: twice as long
        st = self.state()
        self.assertEqual((st["locked"], st["lockCount"], st["nextLockSeconds"]), (False, 1, 2 * self.UNLOCK))

        start = time.monotonic()
        self.lock()
        self.assertLocked(self.login_error(), max_retry=2 * self.UNLOCK)
        st = self.state()
        self.assertEqual((st["lockCount"], st["nextLockSeconds"]), (2, self.CAP))  # 16, capped
        self.assertLasted(self.wait_unlocked(start), 2 * self.UNLOCK)

        self.lock()
        self.assertLocked(self.login_error(), max_retry=self.CAP)
        st = self.state()
        self.assertEqual((st["locked"], st["lockCount"], st["nextLockSeconds"]), (True, 3, self.CAP))
        self.assertEqual(self.idmd.call("getStats")["lockouts"], 3)

    def test_lock_ends_by_itself_and_success_forgets_it(self):
        start = time.monotonic()
        self.lock()
        self.assertLocked(self.login_error(), max_retry=self.UNLOCK)
        self.assertLasted(self.wait_unlocked(start), self.UNLOCK)
        st = self.state()
        self.assertEqual((st["locked"], st["lockCount"], st["nextLockSeconds"]), (False, 1, 2 * self.UNLOCK))
        # the lock ended by itself: the right password works and forgets everything
        self.idmd.call("login", self.login_params())
        st = self.state()
        self.assertEqual((st["locked"], st["lockCount"], st["failures"], st["nextLockSeconds"]),
                         (False, 0, 0, self.UNLOCK))


class LockoutOff(LockoutTestCase):
    CONFIG = """
[lockout]
deny = 0
"""

    def test_deny_zero_never_locks(self):
        for _ in range(20):
            self.assertError(self.login_error(password=WRONG), 401, "invalid_credentials")
        self.idmd.call("login", self.login_params())
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["lockouts"], 0)


if __name__ == "__main__":
    main()
