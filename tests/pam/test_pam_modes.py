# SPDX-License-Identifier: MIT
"""mode=code and mode=device: their conversation and their checks. mode=code runs against the real
idmd (TestCodeWithIdmd: remote-auth and SSO tokens, single use, expiry, another customer's token);
test_pam_device.py drives mode=device against the real idmd. The scripted stand-in for idmd's
token methods (redeemToken, startDeviceLogin, pollDeviceLogin, getCustomer, revokeToken) keeps
the cases a real idmd cannot be made to answer (a short expiry, slow_down on cue, idle
connections, malformed results). The stand-in listens on a root-owned socket, as idmd would."""

import os
import time
import urllib.parse

from pamtest import PAM_SET_ITEMS, FakeIdmd, PamTestCase, error, main

PUBLISHER = "123456789"
EMAIL = "alice@example.com"


def tokens(customer="1234567890"):
    return {"customerId": customer, "jwt": "eyJ.a-b.c_d", "refreshToken": "rt-" + customer,
            "customerToken": "ct-" + customer}


class ModeTestCase(PamTestCase):
    """No real idmd is needed for these: the harness's one serves only setUp."""

    def fake(self, handle, idle_timeout=None):
        path = os.path.join(self.idmd.tmp, "fake-socket")
        f = FakeIdmd(path, handle, idle_timeout=idle_timeout)
        self.addCleanup(f.close)
        return f

    def customer_handler(self, email=EMAIL, publisher=PUBLISHER):
        def get_customer(params):
            if params.get("jwt") != "eyJ.a-b.c_d":
                return error(401, "invalid_token")
            return "result", {"customerId": "1234567890", "email": email, "publisherId": publisher}
        return get_customer


class TestCode(ModeTestCase):
    def handler(self, email=EMAIL):
        get_customer = self.customer_handler(email)

        def handle(method, params):
            if method == "redeemToken":
                return ("result", tokens()) if params.get("token") == "GOOD-CODE" else error(401, "invalid_token")
            if method == "getCustomer":
                return get_customer(params)
            if method == "revokeToken":
                return "result", {}
            return error(-32601, "unknown_method")
        return handle

    def test_code_login(self):
        fake = self.fake(self.handler())
        svc = self.idm_service("tv", "mode=code", "export_env", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth", "env", pw=["GOOD-CODE"])
        self.assertEqual(r.prompts, [("prompt-off", "Code: ")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), "1234567890", r)
        self.assertEqual(r.env.get("IDM_PUBLISHER_ID"), PUBLISHER, r)
        self.assertEqual(fake.methods(), ["redeemToken", "getCustomer"])
        self.ok(svc, EMAIL.upper(), "auth", pw=["GOOD-CODE"])

    def test_bad_code(self):
        fake = self.fake(self.handler())
        svc = self.idm_service("tv", "mode=code", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["BAD-CODE"])

    def test_code_of_another_customer_is_refused_and_revoked(self):
        fake = self.fake(self.handler(email="mallory@example.com"))
        svc = self.idm_service("tv", "mode=code", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["GOOD-CODE"])
        self.assertTrue(r.logged(f"the code belongs to another customer than '{EMAIL}', refusing"), r)
        self.assertEqual(fake.methods(), ["redeemToken", "getCustomer", "revokeToken"])
        self.assertEqual(fake.calls[-1][1], {"token": "rt-1234567890"})

    def stack(self, name, *opts, socket):
        # pam_set_items stands for a module stacked before pam_idm that set PAM_AUTHTOK (a local
        # password module); it takes the value from the environment.
        return self.service(name, f"auth optional {PAM_SET_ITEMS}",
                            f"auth required {self.idm('mode=code', *opts, socket=socket, publisher=PUBLISHER)}")

    def test_stacked_password_is_not_sent_as_code(self):
        fake = self.fake(self.handler())
        svc = self.stack("tv", socket=fake.path)
        # A password typed for the module before (not a code): pam_idm asks for the code instead.
        r = self.ok(svc, EMAIL, "auth", pw=["GOOD-CODE"], env={"PAM_AUTHTOK": "local pass!"})
        self.assertEqual(r.prompts, [("prompt-off", "Code: ")], r)
        self.assertEqual(fake.calls[0], ("redeemToken", {"token": "GOOD-CODE"}))
        self.assertNotIn("local pass!", repr(fake.calls))
        # try_first_pass: the same.
        svc = self.stack("tv-try", "try_first_pass", socket=fake.path)
        r = self.ok(svc, EMAIL, "auth", pw=["GOOD-CODE"], env={"PAM_AUTHTOK": "local pass!"})
        self.assertEqual(r.prompts, [("prompt-off", "Code: ")], r)
        # use_first_pass: no prompt, and nothing is sent.
        calls = len(fake.calls)
        svc = self.stack("tv-use", "use_first_pass", socket=fake.path)
        r = self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["GOOD-CODE"], env={"PAM_AUTHTOK": "local pass!"})
        self.assertEqual(r.prompts, [], r)
        self.assertEqual(len(fake.calls), calls, fake.calls)
        # A stacked value that is a code (a scanning module before pam_idm) is used as it is.
        r = self.ok(svc, EMAIL, "auth", env={"PAM_AUTHTOK": "GOOD-CODE"})
        self.assertEqual(r.prompts, [], r)
        self.assertEqual(fake.calls[-2], ("redeemToken", {"token": "GOOD-CODE"}))

    def test_typed_text_that_is_no_code_is_not_sent(self):
        fake = self.fake(self.handler())
        svc = self.idm_service("tv", "mode=code", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["my password!"])
        self.assertEqual(fake.calls, [])


class TestCodeWithIdmd(PamTestCase):
    """mode=code against the real idmd: remote-auth and SSO tokens, made by the publisher's
    methods, redeemed through pam_wrapper for PAM_USER."""

    NEEDS = ("redeemToken", "prepareRemoteAuth", "getSingleSignOnByCustomer")

    def setUp(self):
        super().setUp()
        self.idmd.call("updatePublisher", {"publisherId": self.publisher, "remoteAuthUrl": "https://tv.example/remote",
                                           "ssoUrl": "https://tv.example/sso"})
        self.idmd.call("addOffer", {"publisherId": self.publisher, "offerId": "TV_1"})
        self.svc = self.idm_service("tv", "mode=code", "export_env")

    def remote_token(self, email):
        url = self.idmd.call("prepareRemoteAuth", {
            "publisherId": self.publisher, "customerData": {"email": email},
            "flowDescription": {"offerId": "TV_1", "redirectUri": "https://app.example.com/cb"}})["url"]
        return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["remote_token"][0]

    def sso_token(self, customer_id, **kw):
        url = self.idmd.call("getSingleSignOnByCustomer", dict({
            "publisherId": self.publisher, "idCustomer": customer_id, "customerType": "CustomerReference"}, **kw))
        return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]

    def test_remote_token(self):
        token = self.remote_token(self.EMAIL)
        r = self.ok(self.svc, self.EMAIL, "auth", "env", pw=[token])
        self.assertEqual(r.prompts, [("prompt-off", "Code: ")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        self.assertEqual(r.env.get("IDM_PUBLISHER_ID"), self.publisher, r)
        # Single use.
        self.ok(self.svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[token])

    def test_sso_token(self):
        token = self.sso_token(self.customer["customerId"], validityTime=60)
        r = self.ok(self.svc, self.EMAIL.upper(), "auth", "env", pw=[token])
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        # Expired.
        token = self.sso_token(self.customer["customerId"], validityTime=1)
        time.sleep(1.5)
        self.ok(self.svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[token])

    def test_token_of_another_customer(self):
        self.register("bob@example.com", "correct horse 9")
        token = self.remote_token("bob@example.com")
        r = self.ok(self.svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[token])
        self.assertTrue(r.logged(f"the code belongs to another customer than '{self.EMAIL}', refusing"), r)
        # The session the redemption started for bob was revoked by the module.
        bob = self.idmd.call("getCustomer", {"publisherId": self.publisher, "email": "bob@example.com"})
        sessions = self.idmd.call("exportCustomer", {"publisherId": self.publisher,
                                                     "customerId": bob["customerId"]})["sessions"]
        # (registration started the other one)
        self.assertEqual(len(sessions), 2, sessions)
        self.assertEqual(len([x for x in sessions if x["revoked"]]), 1, sessions)
        # And the token is used up.
        self.ok(self.svc, "bob@example.com", "auth=PAM_AUTH_ERR", pw=[token])

    def test_unknown_token(self):
        self.ok(self.svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["A" * 43])


class TestDevice(ModeTestCase):
    def handler(self, polls, expires_in=600, user_code="BCDF-GHJK", email=EMAIL, interval=1):
        """polls: what successive pollDeviceLogin calls answer ("pending", "slow", "denied", "ok")."""
        get_customer = self.customer_handler(email)
        answers = list(polls)

        def handle(method, params):
            if method == "startDeviceLogin":
                return "result", {"deviceCode": "dev-code-1", "userCode": user_code,
                                  "verificationUri": "https://tv.example.com/activate",
                                  "verificationUriComplete": f"https://tv.example.com/activate?code={user_code}",
                                  "expiresIn": expires_in, "interval": interval}
            if method == "pollDeviceLogin":
                a = answers.pop(0) if answers else "pending"
                return {"pending": error(428, "authorization_pending"), "slow": error(428, "slow_down"),
                        "denied": error(401, "access_denied"), "ok": ("result", tokens())}[a]
            if method == "getCustomer":
                return get_customer(params)
            if method == "revokeToken":
                return "result", {}
            return error(-32601, "unknown_method")
        return handle

    def test_device_login(self):
        fake = self.fake(self.handler(["pending", "ok"]))
        svc = self.idm_service("tv", "mode=device", "export_env", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth", "env", echo=[""])
        self.assertEqual(r.infos, ["To sign in, visit https://tv.example.com/activate and enter the code BCDF-GHJK"], r)
        # The prompt after the message: sshd shows info messages only together with a prompt.
        self.assertEqual(r.prompts, [("prompt-on", "Press Enter once approved: ")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), "1234567890", r)
        self.assertEqual(fake.methods(), ["startDeviceLogin", "pollDeviceLogin", "pollDeviceLogin", "getCustomer"])
        self.assertEqual(fake.calls[0][1], {"publisherId": PUBLISHER, "deviceName": "tv"})
        self.assertEqual(fake.calls[1][1], {"deviceCode": "dev-code-1"})
        self.assertGreaterEqual(r.elapsed, 1.0, r)      # waited the interval between polls

    def test_each_poll_on_its_own_connection(self):
        # The stand-in closes connections idle for 2 s (idmd: 60 s); the interval is 3 s. A
        # connection held across the wait would be gone at the next poll. (Not 0.5 s and 1 s: the
        # module, stalled for half a second on a loaded machine between the last poll and the
        # customer check on the same connection, found it closed.)
        fake = self.fake(self.handler(["pending", "pending", "ok"], interval=3), idle_timeout=2)
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth", echo=[""])
        self.assertEqual(fake.methods(), ["startDeviceLogin", "pollDeviceLogin", "pollDeviceLogin",
                                          "pollDeviceLogin", "getCustomer"], r)
        polls = [n for (m, _), n in zip(fake.calls, fake.conns) if m == "pollDeviceLogin"]
        self.assertEqual(len(set(polls)), 3, fake.conns)
        self.assertNotIn(fake.conns[0], polls)
        self.assertEqual(fake.conns[-1], polls[-1])     # the customer check right after the last poll
        self.assertEqual(fake.idle_closed, 0)
        self.assertGreaterEqual(r.elapsed, 6.0, r)

    def test_denied(self):
        fake = self.fake(self.handler(["denied"]))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])

    def test_expired(self):
        fake = self.fake(self.handler(["pending", "slow"], expires_in=3))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])
        self.assertEqual(r.errors, ["The sign-in code has expired."], r)
        self.assertLess(r.elapsed, 5.0, r)

    def test_no_answer_to_the_prompt(self):
        fake = self.fake(self.handler(["ok"]))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR")
        self.assertEqual(fake.methods(), ["startDeviceLogin"])

    def test_approved_by_another_customer(self):
        fake = self.fake(self.handler(["ok"], email="mallory@example.com"))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])
        self.assertEqual(fake.methods()[-1], "revokeToken")

    def test_escape_sequences_are_not_shown(self):
        fake = self.fake(self.handler(["ok"], user_code="\x1b[2J"))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_SERVICE_ERR", echo=[""])
        self.assertEqual(r.infos, [], r)
        self.assertTrue(r.logged("malformed startDeviceLogin result"), r)


if __name__ == "__main__":
    main()
