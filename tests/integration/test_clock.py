#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The test clock: idmd started with --test-clock (and IDMD_TEST_CLOCK=1) lets an admin move its
realtime clock forward with testAdvanceClock, so that the production lifetimes are tested
without waiting: the 15-minute access JWT, the 100-day refresh token (and its sliding renewal),
the 14-day customerToken, the 10-minute lockout and the 15-minute failure window, the sweep of
what has expired. Also: without the switch the method does not exist; with it, only admins may
call it; the clock never goes back; the switch alone (without the variable) refuses to start.

Every test runs with the default [tokens] and [lockout] settings: that is the point."""

import datetime
import os
import time
import unittest.mock

from idmtest import Idmd, IdmdTestCase, main

PASSWORD = "correct horse 9"
WRONG = "wrong horse 9"
NOBODY = 65534
MINUTE = 60
HOUR = 3600
DAY = 86400
METHOD = "testAdvanceClock"


def parse_rfc3339(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class ClockTestCase(IdmdTestCase):
    """One idmd per test, with the test clock."""

    def setUp(self):
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        self.pub = self.create_publisher()["publisherId"]

    def advance(self, seconds, **kw):
        """Moves idmd's clock forward; returns the result ({now, offset})."""
        return self.idmd.call(METHOD, dict(seconds=seconds, **kw))

    def register(self, email="alice@example.com"):
        return self.idmd.call("registerCustomer", {"email": email, "password": PASSWORD, "publisherId": self.pub,
                                                   "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def login_error(self, password=PASSWORD, email="alice@example.com"):
        return self.idmd.error("login", {"email": email, "password": password, "publisherId": self.pub})

    def introspect(self, token):
        return self.idmd.call("introspectToken", {"token": token})

    def tokens_stored(self):
        return self.idmd.call("getStats")["store"]["entries"]["tokens"]

    def assertDead(self, error):
        """A refresh token or customerToken past its lifetime: 401 token_expired, or
        invalid_token once the sweep deleted its record (idmd's first sweep runs one second
        after it starts, on the monotonic clock, and may come after the test moved the clock)."""
        self.assertEqual(error["code"], 401, error)
        self.assertIn(error["data"]["reason"], ("token_expired", "invalid_token"), error)


class Method(ClockTestCase):
    def test_listed_and_admin_only(self):
        self.assertIn(METHOD, self.idmd.call("getServerInfo")["methods"])
        reply = self.idmd.call_as(NOBODY, [[METHOD, {"seconds": DAY}], ["getServerInfo", {}]])
        self.assertError(reply[0]["error"], 403, "forbidden")
        self.assertIn(METHOD, reply[1]["result"]["methods"])  # listed for anyone, like getStats
        self.assertEqual(self.idmd.call("getStats")["testClock"], {"offset": 0})  # nothing moved

    def test_advances_and_never_goes_back(self):
        before = time.time()
        r0 = self.advance(0)
        self.assertEqual(r0["offset"], 0)
        self.assertGreaterEqual(parse_rfc3339(r0["now"]), int(before))
        r1 = self.advance(HOUR)
        self.assertEqual(r1["offset"], HOUR)
        self.assertGreaterEqual(parse_rfc3339(r1["now"]), parse_rfc3339(r0["now"]) + HOUR)
        self.assertEqual(self.idmd.call("getStats")["testClock"], {"offset": HOUR})
        # positional params as well
        self.assertEqual(self.idmd.call(METHOD, [MINUTE])["offset"], HOUR + MINUTE)
        # never backwards, never by anything but a whole number of seconds, never beyond 100 years
        for bad in ({"seconds": -1}, {"seconds": -HOUR}, {"seconds": 1.5}, {"seconds": "60"}, {"seconds": None},
                    {}, {"seconds": 101 * 366 * DAY}, {"seconds": 2 ** 62}, {"seconds": 60, "sweep": "yes"},
                    {"seconds": 60, "other": 1}):
            self.assertError(self.idmd.error(METHOD, bad), -32602)
        r2 = self.advance(0)
        self.assertEqual(r2["offset"], HOUR + MINUTE)  # none of the refused calls moved it
        self.assertGreaterEqual(parse_rfc3339(r2["now"]), parse_rfc3339(r1["now"]) + MINUTE)
        # up to the limit, then no further
        self.advance(99 * 366 * DAY)
        self.assertError(self.idmd.error(METHOD, {"seconds": 366 * DAY}), -32602)
        # the uptime is counted on the monotonic clock: it did not jump
        self.assertLess(self.idmd.call("getStats")["uptime"], DAY)

    def test_the_offset_is_not_kept_across_a_restart(self):
        r = self.register()
        self.advance(16 * MINUTE)
        self.idmd.stop()
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        self.assertEqual(self.idmd.call("getStats")["testClock"], {"offset": 0})
        self.assertTrue(self.introspect(r["jwt"])["active"])  # back to the system's time


class Lifetimes(ClockTestCase):
    def test_jwt_expires_after_15_minutes(self):
        r = self.register()
        i = self.introspect(r["jwt"])
        self.assertEqual(i["exp"] - i["iat"], 15 * MINUTE)
        self.advance(14 * MINUTE)
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": r["jwt"]})["customerId"], r["customerId"])
        # 15 minutes and the 60 s leeway: 16 minutes after it was issued, it is refused
        self.advance(2 * MINUTE)
        self.assertError(self.idmd.error("getCustomer", {"jwt": r["jwt"]}), 401, "token_expired")
        self.assertEqual(self.introspect(r["jwt"]), {"active": False})
        # the session goes on: the refresh token gets a new JWT, good for 15 minutes from now
        n = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": n["jwt"]})["customerId"], r["customerId"])
        self.advance(16 * MINUTE)
        self.assertError(self.idmd.error("getCustomer", {"jwt": n["jwt"]}), 401, "token_expired")

    def test_refresh_token_dies_after_100_days(self):
        r = self.register()
        i = self.introspect(r["refreshToken"])
        self.assertEqual(i["exp"] - i["iat"], 100 * DAY)
        self.advance(100 * DAY - HOUR)
        self.assertTrue(self.introspect(r["refreshToken"])["active"])
        self.advance(2 * HOUR)
        self.assertEqual(self.introspect(r["refreshToken"]), {"active": False})
        self.assertDead(self.idmd.error("refreshToken", {"refreshToken": r["refreshToken"]}))

    def test_refresh_token_lifetime_slides(self):
        r = self.register()
        self.advance(99 * DAY)
        n = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        # the successor lives 100 days from its rotation, well past the first token's end
        self.advance(99 * DAY)
        self.assertTrue(self.introspect(n["refreshToken"])["active"])
        n2 = self.idmd.call("refreshToken", {"refreshToken": n["refreshToken"]})
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": n2["jwt"]})["customerId"], r["customerId"])
        # and one nobody renews ends: 100 days and an hour after the last rotation
        self.advance(100 * DAY + HOUR)
        self.assertEqual(self.introspect(n2["refreshToken"]), {"active": False})
        self.assertDead(self.idmd.error("refreshToken", {"refreshToken": n2["refreshToken"]}))

    def test_customer_token_dies_after_14_days(self):
        r = self.register()
        i = self.introspect(r["customerToken"])
        self.assertEqual(i["exp"] - i["iat"], 14 * DAY)
        self.advance(14 * DAY - HOUR)
        self.assertEqual(self.idmd.call("getCustomer", {"customerToken": r["customerToken"]})["customerId"],
                         r["customerId"])
        self.advance(2 * HOUR)
        self.assertDead(self.idmd.error("getCustomer", {"customerToken": r["customerToken"]}))
        self.assertEqual(self.introspect(r["customerToken"]), {"active": False})
        # the session itself lives on through its refresh token (100 days)
        self.assertTrue(self.introspect(r["refreshToken"])["active"])

    def wait_tokens_stored(self, want, timeout=60):
        """Polls until the sweep has brought the token table down to want records. The sweep
        runs in the background: testAdvanceClock's "sweep" only starts it, so each poll asks
        again (a sweep already running is then followed by another at once)."""
        deadline = time.monotonic() + timeout
        while (n := self.tokens_stored()) > want:
            self.assertLess(time.monotonic(), deadline, f"the sweep left {n} token records, not {want}")
            time.sleep(0.05)
            self.advance(0, sweep=True)
        self.assertEqual(n, want)

    def test_sweep_deletes_what_has_expired(self):
        r = self.register()
        stored = self.tokens_stored()
        self.assertGreater(stored, 1)
        # after 15 days the customerToken is past its life (the session is not): one record goes
        self.advance(15 * DAY, sweep=True)
        self.wait_tokens_stored(stored - 1)
        self.assertError(self.idmd.error("getCustomer", {"customerToken": r["customerToken"]}), 401,
                         "invalid_token")
        self.assertTrue(self.introspect(r["refreshToken"])["active"])
        # after 101 days nothing of the session is left
        self.advance(86 * DAY, sweep=True)
        self.wait_tokens_stored(0)
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": r["refreshToken"]}), 401,
                         "invalid_token")


class Lockout(ClockTestCase):
    def lock(self):
        for _ in range(5):  # the default deny = 5
            self.assertEqual(self.login_error(password=WRONG)["code"], 401)

    def retry_after(self):
        e = self.login_error()
        self.assertError(e, 423, "account_locked")
        return e["data"]["retryAfter"]

    def test_lockout_ends_after_10_minutes(self):
        self.register()
        self.lock()
        self.assertGreater(self.retry_after(), 9 * MINUTE)
        self.advance(9 * MINUTE)
        self.assertLessEqual(self.retry_after(), MINUTE)  # still locked, about a minute to go
        self.advance(MINUTE + 1)
        self.assertIn("jwt", self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD,
                                                     "publisherId": self.pub}))
        st = self.idmd.call("getCustomerLockout", {"publisherId": self.pub, "email": "alice@example.com"})
        self.assertEqual((st["locked"], st["failures"]), (False, 0))

    def test_repeat_lock_lasts_longer(self):
        self.register()
        self.lock()
        self.advance(10 * MINUTE + 1)
        self.lock()  # again, within max_unlock_time (an hour) of the first: twice as long
        self.assertGreater(self.retry_after(), 19 * MINUTE)
        self.advance(19 * MINUTE)
        self.assertLessEqual(self.retry_after(), MINUTE)
        self.advance(MINUTE + 1)
        self.assertIn("jwt", self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD,
                                                     "publisherId": self.pub}))

    def test_failures_are_forgotten_after_15_minutes(self):
        self.register()
        for _ in range(4):
            self.assertEqual(self.login_error(password=WRONG)["code"], 401)
        self.advance(15 * MINUTE + 1)  # fail_interval = 900 s
        # the fifth wrong password is the first that counts: no lock
        self.assertEqual(self.login_error(password=WRONG)["code"], 401)
        st = self.idmd.call("getCustomerLockout", {"publisherId": self.pub, "email": "alice@example.com"})
        self.assertEqual((st["locked"], st["failures"]), (False, 1))


class WithoutTheSwitch(IdmdTestCase):
    """A plain idmd: the method does not exist, for root or anyone else."""

    def test_unknown_method(self):
        self.assertNotIn(METHOD, self.idmd.call("getServerInfo")["methods"])
        for params in ({"seconds": 60}, {}, {"seconds": 60, "sweep": True}, [60]):
            self.assertError(self.idmd.error(METHOD, params), -32601, "unknown_method")
        reply = self.idmd.call_as(NOBODY, [[METHOD, {"seconds": 60}]])
        self.assertError(reply[0]["error"], -32601, "unknown_method")
        stats = self.idmd.call("getStats")
        self.assertNotIn(METHOD, stats["methods"])
        self.assertNotIn("testClock", stats)

    def test_the_variable_alone_does_nothing(self):
        self.idmd.stop()
        self.idmd.start(extra_env={"IDMD_TEST_CLOCK": "1"})
        self.assertError(self.idmd.error(METHOD, {"seconds": 60}), -32601, "unknown_method")

    def test_the_switch_alone_refuses_to_start(self):
        self.idmd.stop()
        for value in (None, "0", "yes", ""):
            with unittest.mock.patch.dict(os.environ):
                os.environ.pop("IDMD_TEST_CLOCK", None)
                env = {} if value is None else {"IDMD_TEST_CLOCK": value}
                self.idmd.start(wait=False, args=self.idmd.args() + ["--test-clock"], extra_env=env)
                self.assertNotEqual(self.idmd.proc.wait(60), 0)
        self.assertIn("--test-clock is for tests only", self.idmd.log_text())
        self.assertNotIn("TEST CLOCK", self.idmd.log_text())


if __name__ == "__main__":
    main()
