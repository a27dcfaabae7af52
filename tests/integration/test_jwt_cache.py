#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The cache of verified JWTs (docs/decisions.md): a JWT keeps working through it (getStats
counts the hits), from its first use since idmd minted it; it never stands in for a check that
can change after the signature was verified: a JWT fails at once after rotateSigningKey
{revokePrevious}, logoutAll, revokeToken,
changePassword (for the other sessions), setCustomerDisabled and deleteCustomer, and after the
injected clock passes its exp (plus the 60 s leeway, as without the cache). The bound itself
(4096 entries) is tested with a small cache in tests/unit/test-tokens.c; here getStats shows it.

The cache of decoded records behind the same reads (getStats recordCache; its rules are tested in
tests/unit/test-store.c) is checked here through the real daemon: reads are served from it, and a
write is seen by the next read."""

from idmtest import Idmd, IdmdTestCase, main

PASSWORD = "correct horse 9"
NEW_PASSWORD = "correct horse 10"
MINUTE = 60
CAPACITY = 4096


class JwtCacheTestCase(IdmdTestCase):
    """One idmd per test, with the test clock."""

    def setUp(self):
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        self.pub = self.create_publisher()
        self.session = self.register("alice@example.com")

    def register(self, email):
        return self.idmd.call("registerCustomer", {"email": email, "password": PASSWORD,
                                                   "publisherId": self.pub["publisherId"],
                                                   "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def login(self, email="alice@example.com"):
        return self.idmd.call("login", {"email": email, "password": PASSWORD, "publisherId": self.pub["publisherId"]})

    def stats(self):
        return self.idmd.call("getStats")["jwtCache"]

    def get(self, token):
        return self.idmd.call("getCustomer", {"jwt": token})

    def assertRefused(self, token, reason="invalid_token"):
        self.assertError(self.idmd.error("getCustomer", {"jwt": token}), 401, reason)
        self.assertEqual(self.idmd.call("introspectToken", {"token": token}), {"active": False})

    def cached(self, token):
        """Uses token until it is answered from the cache (one miss, then hits)."""
        before = self.stats()
        for _ in range(3):
            self.assertEqual(self.get(token)["customerId"], self.session["customerId"])
        after = self.stats()
        self.assertGreaterEqual(after["hits"] - before["hits"], 2, (before, after))
        self.assertGreaterEqual(after["entries"], 1)


class Cache(JwtCacheTestCase):
    def test_a_jwt_keeps_working_through_the_cache(self):
        s = self.stats()
        self.assertEqual(s["capacity"], CAPACITY)
        self.assertEqual(s["entries"], 1)  # the JWT registerCustomer minted (below)
        self.cached(self.session["jwt"])
        # introspectToken uses the same verification
        info = self.idmd.call("introspectToken", {"token": self.session["jwt"]})
        self.assertTrue(info["active"])
        self.assertEqual(info["customerId"], self.session["customerId"])
        # an altered token is refused although the original is cached
        h, c, sig = self.session["jwt"].split(".")
        altered = ".".join((h, c, ("A" if sig[0] != "A" else "B") + sig[1:]))
        self.assertRefused(altered)
        self.assertEqual(self.get(self.session["jwt"])["email"], "alice@example.com")

    def test_a_minted_jwt_is_answered_from_the_cache_at_once(self):
        # idmd signed it: its claims are known without verifying the signature again
        for mint in (lambda: self.login(), lambda: self.idmd.call("refreshToken",
                                                                    {"refreshToken": self.session["refreshToken"]})):
            token = mint()["jwt"]
            before = self.stats()
            self.assertEqual(self.get(token)["customerId"], self.session["customerId"])
            after = self.stats()
            self.assertEqual(after["hits"] - before["hits"], 1, (before, after))
            self.assertEqual(after["misses"], before["misses"], (before, after))
        # and it is refused as soon as its session ends, like any other
        self.idmd.call("logoutAll", {"jwt": token})
        self.assertRefused(token)

    def test_entries_stay_within_the_bound(self):
        tokens = [self.session["jwt"]]
        rt = self.session["refreshToken"]
        for _ in range(20):
            r = self.idmd.call("refreshToken", {"refreshToken": rt})
            rt = r["refreshToken"]
            tokens.append(r["jwt"])
        for t in tokens + tokens:
            self.get(t)
        s = self.stats()
        self.assertEqual(s["entries"], len(tokens))  # one entry per distinct token
        self.assertLessEqual(s["entries"], s["capacity"])
        self.assertGreaterEqual(s["hits"], len(tokens))
        self.assertEqual(s["evictions"], 0)

    def test_revoke_previous_key_fails_at_once(self):
        old = self.session["jwt"]
        self.cached(old)
        flushes = self.stats()["flushes"]
        # a plain rotation: the old key keeps verifying (checked again, then cached again)
        self.idmd.call("rotateSigningKey")
        self.assertGreater(self.stats()["flushes"], flushes)
        self.cached(old)
        # revokePrevious: what the old key signed fails at once
        self.assertGreaterEqual(self.idmd.call("rotateSigningKey", {"revokePrevious": True})["revoked"], 1)
        self.assertRefused(old)
        fresh = self.idmd.call("refreshToken", {"refreshToken": self.session["refreshToken"]})
        self.assertEqual(self.get(fresh["jwt"])["customerId"], self.session["customerId"])

    def test_logout_all_fails_at_once(self):
        other = self.login()
        self.cached(self.session["jwt"])
        self.cached(other["jwt"])
        flushes = self.stats()["flushes"]
        self.assertEqual(self.idmd.call("logoutAll", {"jwt": self.session["jwt"]}), {"revoked": 2})
        self.assertRefused(self.session["jwt"])
        self.assertRefused(other["jwt"])
        s = self.stats()
        self.assertGreater(s["flushes"], flushes)
        self.assertEqual(s["entries"], 0)  # refused tokens are not cached

    def test_revoke_token_fails_at_once(self):
        other = self.login()
        self.cached(self.session["jwt"])
        self.cached(other["jwt"])
        self.assertEqual(self.idmd.call("revokeToken", {"token": other["refreshToken"]}), {})
        self.assertRefused(other["jwt"])
        self.cached(self.session["jwt"])  # the other session goes on

    def test_password_change_ends_the_other_sessions_at_once(self):
        other = self.login()
        self.cached(self.session["jwt"])
        self.cached(other["jwt"])
        self.idmd.call("changePassword", {"jwt": self.session["jwt"], "oldPassword": PASSWORD,
                                          "newPassword": NEW_PASSWORD})
        self.assertRefused(other["jwt"])
        self.cached(self.session["jwt"])  # the session that changed it goes on

    def test_disabling_the_customer_fails_at_once(self):
        self.cached(self.session["jwt"])
        self.idmd.call("setCustomerDisabled", {"publisherToken": self.pub["publisherToken"],
                                               "customerId": self.session["customerId"], "disabled": True})
        self.assertRefused(self.session["jwt"])

    def test_deleting_the_customer_fails_at_once(self):
        self.cached(self.session["jwt"])
        self.idmd.call("deleteCustomer", {"publisherToken": self.pub["publisherToken"],
                                          "customerId": self.session["customerId"]})
        self.assertRefused(self.session["jwt"])

    def test_the_injected_clock_passing_exp(self):
        token = self.session["jwt"]
        self.cached(token)
        self.idmd.call("testAdvanceClock", {"seconds": 14 * MINUTE})
        self.cached(token)  # before exp: from the cache
        # past exp (15 minutes) but within the 60 s leeway: verified again, never from the cache
        self.idmd.call("testAdvanceClock", {"seconds": MINUTE + 10})
        hits = self.stats()["hits"]
        self.assertEqual(self.get(token)["customerId"], self.session["customerId"])
        self.assertEqual(self.get(token)["customerId"], self.session["customerId"])
        s = self.stats()
        self.assertEqual(s["hits"], hits)
        self.assertEqual(s["entries"], 0)
        # past the leeway: expired, as without the cache
        self.idmd.call("testAdvanceClock", {"seconds": MINUTE})
        self.assertRefused(token, "token_expired")


class RecordCache(JwtCacheTestCase):
    def records(self):
        return self.idmd.call("getStats")["recordCache"]

    def test_reads_come_from_the_cache_and_see_every_write(self):
        token = self.session["jwt"]
        self.get(token)
        before = self.records()
        self.assertGreaterEqual(before["entries"], 2)
        self.assertLessEqual(before["bytes"], 1 << 20)
        for _ in range(3):
            self.assertEqual(self.get(token)["country"], "GB")
        after = self.records()
        # each getCustomer reads the token's family and the customer: both were kept (misses are
        # not compared: idmd's own timers, such as the signing keys' sync on PostgreSQL, may read)
        self.assertGreaterEqual(after["hits"] - before["hits"], 6, (before, after))
        self.assertGreaterEqual(after["entries"], 2)
        me = self.idmd.call("updateCustomer", {"jwt": token, "country": "DE", "currency": "EUR"})
        self.assertEqual(me["country"], "DE")
        self.assertEqual(self.get(token)["country"], "DE")
        self.assertEqual(self.get(token)["currency"], "EUR")
        # a deleted customer is gone, whatever was kept of its records
        self.idmd.call("deleteCustomer", {"publisherToken": self.pub["publisherToken"],
                                          "customerId": self.session["customerId"]})
        self.assertRefused(token)


if __name__ == "__main__":
    main()
