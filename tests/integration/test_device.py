#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Device login (RFC 8628) through the real socket: startDeviceLogin hands out a device code and
a XXXX-XXXX user code for a publisher with a deviceVerificationUrl; pollDeviceLogin answers 428
authorization_pending, 428 slow_down when polled sooner than the interval (which then grows by
5 s), 401 access_denied after denyDeviceLogin, 401 token_expired after ten minutes, and the
session's tokens after approveDeviceLogin, exactly once (also to many concurrent pollers); a user
code is typed in any case with or without dashes and spaces, is used once, and is unknown (404) to
another publisher's customers; guessing user codes hits the login class's rate limit; idmctl device
approve approves on a named customer's behalf; and the records are hashes, swept at expiry and
deleted with their customer."""

import concurrent.futures
import subprocess
import time
import urllib.parse

from idmtest import IDMCTL, Idmd, IdmdTestCase, main

PASSWORD = "correct horse 9"
VERIFY_URL = "https://acme.example/device?lang=en"
ALPHABET = set("BCDFGHJKLMNPQRSTVWXZ")


class DeviceCase(IdmdTestCase):
    """A publisher with a verification URL and its customer Alice, and another publisher with
    its customer Mallory, on an idmd with the test clock."""

    CONFIG = ""

    def setUp(self):
        self.idmd = Idmd(self.CONFIG)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        self.pub = self.create_publisher(deviceVerificationUrl=VERIFY_URL)["publisherId"]
        self.other = self.create_publisher(name="Other", deviceVerificationUrl="https://other.example/d")["publisherId"]
        self.alice = self.idmd.call("registerCustomer", {"email": "alice@example.com", "password": PASSWORD,
                                                         "publisherId": self.pub})
        self.mallory = self.idmd.call("registerCustomer", {"email": "mallory@example.com", "password": PASSWORD,
                                                           "publisherId": self.other})

    def start(self, **kw):
        return self.idmd.call("startDeviceLogin", dict({"publisherId": self.pub}, **kw))

    def poll(self, start):
        with self.idmd.client() as c:
            return c.request("pollDeviceLogin", {"deviceCode": start["deviceCode"]})

    def approve(self, code, jwt=None, method="approveDeviceLogin"):
        return self.idmd.call(method, {"jwt": jwt or self.alice["jwt"], "userCode": code})

    def advance(self, seconds, sweep=False):
        params = {"seconds": seconds}
        if sweep:
            params["sweep"] = True
        self.idmd.call("testAdvanceClock", params)


class Device(DeviceCase):
    def test_start(self):
        s = self.start(deviceName="tv")
        self.assertEqual(set(s), {"deviceCode", "userCode", "verificationUri", "verificationUriComplete",
                                  "expiresIn", "interval"})
        self.assertEqual((s["expiresIn"], s["interval"]), (600, 5))
        self.assertGreaterEqual(len(s["deviceCode"]), 43)               # 256 bits, base64url
        self.assertRegex(s["userCode"], r"^[A-Z]{4}-[A-Z]{4}$")
        self.assertLessEqual(set(s["userCode"].replace("-", "")), ALPHABET)
        self.assertEqual(s["verificationUri"], VERIFY_URL)
        url = urllib.parse.urlsplit(s["verificationUriComplete"])
        query = urllib.parse.parse_qs(url.query)
        self.assertEqual((url.netloc, url.path, query["lang"]), ("acme.example", "/device", ["en"]))
        self.assertEqual(query["user_code"], [s["userCode"]])
        # Only hashes at rest.
        tokens = str(self.idmd.table("tokens"))
        self.assertNotIn(s["deviceCode"], tokens)
        self.assertNotIn(s["userCode"].replace("-", ""), tokens)
        self.assertNotIn(s["userCode"], tokens)
        # By offer too; two logins get different codes.
        self.idmd.call("addOffer", {"publisherId": self.pub, "offerId": "tv-offer"})
        t = self.idmd.call("startDeviceLogin", {"offerId": "tv-offer"})
        self.assertNotEqual(t["deviceCode"], s["deviceCode"])
        self.assertNotEqual(t["userCode"], s["userCode"])

    def test_start_refusals(self):
        bare = self.create_publisher(name="Bare")["publisherId"]
        self.assertError(self.idmd.error("startDeviceLogin", {"publisherId": bare}), 400, "device_login_disabled")
        self.assertError(self.idmd.error("startDeviceLogin", {"publisherId": "9999999999"}), 404, "not_found")
        self.assertError(self.idmd.error("startDeviceLogin", {}), -32602)
        self.assertError(self.idmd.error("startDeviceLogin", {"publisherId": self.pub, "deviceName": "a\nb"}),
                         400, "invalid_value")
        self.assertError(self.idmd.error("startDeviceLogin", {"publisherId": self.pub, "x": 1}), -32602)
        self.assertError(self.idmd.error("updatePublisher", {"publisherId": self.pub,
                                                             "deviceVerificationUrl": "ftp://x"}), 400, "invalid_uri")
        self.assertEqual(self.idmd.call("getPublisher", {"publisherId": self.pub})["deviceVerificationUrl"],
                         VERIFY_URL)

    def test_flow_tokens_exactly_once(self):
        s = self.start(deviceName="living room tv")
        self.assertError(self.poll(s)["error"], 428, "authorization_pending")
        self.assertEqual(self.approve(s["userCode"]), {"deviceName": "living room tv"})
        r = self.poll(s)["result"]
        self.assertEqual(set(r), {"customerId", "publisherId", "jwt", "refreshToken", "customerToken"})
        self.assertEqual((r["customerId"], r["publisherId"]), (self.alice["customerId"], self.pub))
        c = self.idmd.call("getCustomer", {"jwt": r["jwt"]})
        self.assertEqual(c["email"], "alice@example.com")
        self.assertTrue(self.idmd.call("introspectToken", {"token": r["refreshToken"]})["active"])
        # Exactly once.
        self.assertError(self.poll(s)["error"], 401, "invalid_token")
        # The user code was used: a second approval finds nothing.
        self.assertError(self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"],
                                                                "userCode": s["userCode"]}), 404, "not_found")
        self.assertFalse(any(k.startswith(("device:", "devcode:")) for k in self.idmd.table("tokens")))
        self.assertRegex(self.idmd.log_text(), r"approved a device login \(device 'living room tv'\)")

    def test_many_pollers_one_gets_the_tokens(self):
        s = self.start()
        self.approve(s["userCode"])
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda _: self.poll(s), range(32)))
        ok = [r for r in replies if "result" in r]
        self.assertEqual(len(ok), 1, replies)
        for r in replies:
            if "error" in r:
                self.assertError(r["error"], 401, "invalid_token")

    def test_slow_down(self):
        s = self.start()
        self.assertError(self.poll(s)["error"], 428, "authorization_pending")
        e = self.poll(s)["error"]                               # at once: too soon
        self.assertError(e, 428, "slow_down")
        self.assertEqual(e["data"]["interval"], 10)
        self.advance(5)
        e = self.poll(s)["error"]                               # 5 s < the 10 s it is now
        self.assertError(e, 428, "slow_down")
        self.assertEqual(e["data"]["interval"], 15)
        self.advance(15)
        e = self.poll(s)["error"]
        self.assertError(e, 428, "authorization_pending")
        self.assertEqual(e["data"]["interval"], 15)
        self.advance(15)
        self.approve(s["userCode"])
        self.assertIn("result", self.poll(s))

    def test_denied(self):
        s = self.start()
        self.assertEqual(self.approve(s["userCode"], method="denyDeviceLogin"), {})
        self.assertError(self.poll(s)["error"], 401, "access_denied")
        self.advance(5)
        self.assertError(self.poll(s)["error"], 401, "access_denied")
        # Decided: the code cannot be approved after all.
        self.assertError(self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": s["userCode"]}),
                         404, "not_found")

    def test_expired(self):
        # The sweep's first round (1 s after the start) must not delete the expired records
        # between the clock's move and the poll: run a round now, the next is a minute away.
        self.advance(0, sweep=True)
        time.sleep(0.5)
        s = self.start()
        self.advance(601)
        self.assertError(self.poll(s)["error"], 401, "token_expired")
        self.assertError(self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": s["userCode"]}),
                         401, "token_expired")
        # Approved, then expired before the device came back: no tokens.
        t = self.start()
        self.approve(t["userCode"])
        self.advance(601)
        self.assertError(self.poll(t)["error"], 401, "token_expired")
        # The sweep deletes them.
        deadline = time.monotonic() + 30
        while any(k.startswith(("device:", "devcode:")) for k in self.idmd.table("tokens")):
            self.assertLess(time.monotonic(), deadline, "the sweep left device login records")
            time.sleep(0.05)
            self.advance(0, sweep=True)
        self.assertError(self.poll(s)["error"], 401, "invalid_token")

    def test_user_code_normalisation(self):
        for typed in (lambda c: c.lower(), lambda c: c.replace("-", ""), lambda c: " ".join(c.replace("-", "")),
                      lambda c: c[:2] + "-" + c[2:].lower()):
            s = self.start()
            self.approve(typed(s["userCode"]))
            self.assertIn("result", self.poll(s))
        for bad in ("", "ABCD-EFGH", "BCDF-GHJ", "BCDF-GHJKL", "BCDF_GHJK", "BCDF-GHJ1"):
            e = self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": bad})
            self.assertError(e, -32602)
        self.assertError(self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": "BCDF-GHJK"}),
                         404, "not_found")

    def test_other_publishers_customer_cannot_approve(self):
        s = self.start()
        for method in ("approveDeviceLogin", "denyDeviceLogin"):
            e = self.idmd.error(method, {"jwt": self.mallory["jwt"], "userCode": s["userCode"]})
            self.assertError(e, 404, "not_found")
        self.assertError(self.poll(s)["error"], 428, "authorization_pending")
        # Nor by an admin naming it for the other publisher, or naming the other's customer.
        e = self.idmd.error("approveDeviceLogin", {"publisherId": self.other, "customerEmail": "mallory@example.com",
                                                   "userCode": s["userCode"]})
        self.assertError(e, 404, "not_found")
        e = self.idmd.error("approveDeviceLogin", {"publisherId": self.pub, "customerEmail": "mallory@example.com",
                                                   "userCode": s["userCode"]})
        self.assertError(e, 404, "not_found")
        self.approve(s["userCode"])
        self.assertEqual(self.poll(s)["result"]["customerId"], self.alice["customerId"])

    def test_approval_needs_a_customer(self):
        s = self.start()
        self.assertError(self.idmd.error("approveDeviceLogin", {"jwt": "x.y.z", "userCode": s["userCode"]}),
                         401, "invalid_token")
        # jwt and a named customer: one or the other.
        e = self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "publisherId": self.pub,
                                                   "userCode": s["userCode"]})
        self.assertError(e, -32602)
        # Not an admin: no named customer.
        self.idmd.open_to_others()
        [reply] = self.idmd.call_as(65534, [["approveDeviceLogin", {"publisherId": self.pub,
                                                                    "customerEmail": "alice@example.com",
                                                                    "userCode": s["userCode"]}]])
        self.assertError(reply["error"], -32602)
        # A customerToken (a publisher backend's) is no customer's own approval.
        e = self.idmd.error("approveDeviceLogin", {"customerToken": self.alice["customerToken"],
                                                   "userCode": s["userCode"]})
        self.assertError(e, -32602)
        # An unprivileged caller may start and poll, and approve with the customer's jwt.
        [started] = self.idmd.call_as(65534, [["startDeviceLogin", {"publisherId": self.pub}]])
        t = started["result"]
        [approved] = self.idmd.call_as(65534, [["approveDeviceLogin", {"jwt": self.alice["jwt"],
                                                                       "userCode": t["userCode"]}]])
        self.assertEqual(approved["result"], {})
        [polled] = self.idmd.call_as(65534, [["pollDeviceLogin", {"deviceCode": t["deviceCode"]}]])
        self.assertEqual(polled["result"]["customerId"], self.alice["customerId"])

    def test_admin_form_and_disabled_customer(self):
        s = self.start()
        r = self.idmd.call("approveDeviceLogin", {"publisherId": self.pub, "customerId": self.alice["customerId"],
                                                  "userCode": s["userCode"]})
        self.assertEqual(r, {})
        # Disabled between the approval and the poll: denied, no tokens.
        self.idmd.call("setCustomerDisabled", {"publisherId": self.pub, "customerId": self.alice["customerId"],
                                          "disabled": True})
        self.assertError(self.poll(s)["error"], 401, "access_denied")
        t = self.start()
        e = self.idmd.error("approveDeviceLogin", {"publisherId": self.pub, "customerEmail": "alice@example.com",
                                                   "userCode": t["userCode"]})
        self.assertError(e, 403, "account_disabled")

    def test_delete_customer_takes_its_approved_login(self):
        s = self.start()
        self.approve(s["userCode"])
        self.assertTrue(any(k.startswith("device:") for k in self.idmd.table("tokens")))
        self.idmd.call("deleteCustomer", {"publisherId": self.pub, "email": "alice@example.com"})
        self.idmd.wait_purged()     # records found only by a walk go in the background
        self.assertFalse(any(k.startswith("device:") for k in self.idmd.table("tokens")))
        self.assertError(self.poll(s)["error"], 401, "invalid_token")

    def test_idmctl_device_approve(self):
        s = self.start()
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "device", "approve", s["userCode"].lower(),
                            "--customer", "alice@example.com", "--publisher", self.pub],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("approved", p.stdout)
        self.assertEqual(self.poll(s)["result"]["customerId"], self.alice["customerId"])
        t = self.start()
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "device", "deny", t["userCode"],
                            "--customer", self.alice["customerId"], "--publisher", self.pub],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertError(self.poll(t)["error"], 401, "access_denied")
        # Unknown code; no --customer.
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "device", "approve", "BCDF-GHJK",
                            "--customer", "alice@example.com", "--publisher", self.pub],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, "^idmctl: ")
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "device", "approve", "BCDF-GHJK",
                            "--publisher", self.pub], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)


class DeviceGuessing(DeviceCase):
    """The login class with a small budget: guessing user codes runs into 429."""

    CONFIG = "[ratelimit.login]\nrate = 1\nburst = 10\nconcurrency = 10\n"

    def test_guessing_hits_the_rate_limit(self):
        s = self.start()
        codes = []
        with self.idmd.client() as c:
            for i in range(12):
                reply = c.request("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": "BCDF-GHJ" + "BCDFGHJKLMNP"[i]})
                codes.append(reply["error"]["code"])
        self.assertIn(404, codes)
        self.assertIn(429, codes)
        self.assertEqual(codes[-1], 429)
        # The real code, now, is refused as well: the budget is spent before any lookup.
        e = self.idmd.error("approveDeviceLogin", {"jwt": self.alice["jwt"], "userCode": s["userCode"]})
        self.assertError(e, 429, "rate_limited")


if __name__ == "__main__":
    main()
