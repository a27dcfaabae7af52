#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The PAM methods through the real socket, as pam_idm calls them (the contract in
include/idm/protocol.h): pamAuthenticate with its context, what root and unprivileged peers are
told, its tokens only when asked for ("tokens": true), pamAccount's authorization (admin, or the peer uid that authenticated the user) with the
disabled flag and outdated consents, pamAcceptConsents, pamChangePassword (verify only, change,
weak, wrong, lockout), pamCloseSession with and without sessionId, and setCustomerDisabled.
Unprivileged peers are real: a small client run with setpriv."""

import base64
import json

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NEW_PASSWORD = "battery staple 7"
EMAIL = "alice@example.com"
NOBODY = 65534
OTHER_UID = 4242


def jwt_claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class PamMethods(IdmdTestCase):
    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub, self.token = p["publisherId"], p["publisherToken"]
        self.customer = self.register(EMAIL)

    # --- helpers ---

    def register(self, email):
        return self.idmd.call("registerCustomer", {
            "email": email, "password": PASSWORD, "publisherId": self.pub, "locale": "en_GB", "country": "GB",
            "currency": "GBP"})

    def p(self, **kw):
        """The params of a PAM method: this publisher and alice, plus kw."""
        params = {"publisherId": self.pub, "user": EMAIL}
        params.update(kw)
        return params

    def auth(self, user=EMAIL, password=PASSWORD, tokens=True, **kw):
        """pamAuthenticate; by default asking for the tokens, whose state most tests check."""
        if tokens is not None:
            kw["tokens"] = tokens
        return self.idmd.call("pamAuthenticate", self.p(user=user, password=password, **kw))

    def pam(self, method, **kw):
        return self.idmd.call(method, self.p(**kw))

    def pam_error(self, method, **kw):
        return self.idmd.error(method, self.p(**kw))

    def active(self, token):
        return self.idmd.call("introspectToken", {"token": token})["active"]

    # --- pamAuthenticate ---

    def test_authenticate(self):
        r = self.auth(user="Alice@Example.COM", service="sshd", rhost="192.0.2.9", tty="ssh", ruser="bob")
        self.assertEqual(sorted(r), sorted(["customerId", "publisherId", "sessionId", "jwt", "refreshToken",
                                            "customerToken"]))
        self.assertEqual(r["customerId"], self.customer["customerId"])
        self.assertEqual(r["publisherId"], self.pub)
        self.assertEqual(jwt_claims(r["jwt"])["sid"], r["sessionId"])
        self.assertTrue(self.active(r["refreshToken"]))
        me = self.idmd.call("getCustomer", {"jwt": r["jwt"]})
        self.assertEqual(me["lastUserIP"], "192.0.2.9")     # rhost given as an address
        # by offer too; a host name is context, not an address
        self.idmd.call("addOffer", {"publisherToken": self.token, "offerId": "KIOSK"})
        r2 = self.idmd.call("pamAuthenticate", {"offerId": "KIOSK", "user": EMAIL, "password": PASSWORD,
                                                "rhost": "host.example.net", "service": "login", "tokens": True})
        self.assertNotEqual(r2["sessionId"], r["sessionId"])
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": r2["jwt"]})["lastUserIP"], "192.0.2.9")

        log = self.idmd.log_text()
        self.assertRegex(log, r"c\d+\.\d+: PAM authentication for publisher %s: service 'sshd', rhost "
                              r"'192\.0\.2\.9', tty 'ssh', ruser 'bob'" % self.pub)
        self.assertIn("rhost 'host.example.net', tty '-'", log)
        self.assertIn("PAM session %s of customer" % r["sessionId"], log)
        for secret in (PASSWORD, r["refreshToken"], r["customerToken"], r["jwt"]):
            self.assertNotIn(secret, log)

        # control characters in the context do not reach the log as such
        self.auth(rhost="evil\nInjected line", tty="\x1b[31m")
        self.assertNotIn("\nInjected line", self.idmd.log_text())
        self.assertIn("rhost 'evil?Injected line', tty '?[31m'", self.idmd.log_text())

    def test_authenticate_tokens_only_when_asked(self):
        # By default no token: the PAM stack needs only the session id, and whatever a client
        # reads may stay in its freed memory (sshd, login). The session itself is the same.
        fields = ["customerId", "publisherId", "sessionId"]
        tokens = ["jwt", "refreshToken", "customerToken"]
        for kw in ({"tokens": None}, {"tokens": False}):
            r = self.auth(**kw)
            self.assertEqual(sorted(r), sorted(fields), r)
            self.assertEqual(r["customerId"], self.customer["customerId"])
            self.assertEqual(r["publisherId"], self.pub)
        # ... also to an unprivileged peer, whose PAM session is recorded all the same
        r = self.idmd.call_as(NOBODY, [["pamAuthenticate", self.p(password=PASSWORD)],
                                       ["pamAccount", self.p()]])
        self.assertEqual(sorted(r[0]["result"]), sorted(fields), r)
        self.assertEqual(r[1]["result"]["customerId"], self.customer["customerId"])
        # the session is live and closes by its id like one whose tokens were sent
        r = self.auth(tokens=None)
        withtokens = self.auth(tokens=True)
        self.assertEqual(sorted(withtokens), sorted(fields + tokens), withtokens)
        self.assertEqual(jwt_claims(withtokens["jwt"])["sid"], withtokens["sessionId"])
        self.assertTrue(self.active(withtokens["refreshToken"]))
        self.assertTrue(self.active(withtokens["customerToken"]))
        self.assertEqual(self.pam("pamCloseSession", sessionId=withtokens["sessionId"]), {})
        self.assertFalse(self.active(withtokens["refreshToken"]))
        self.assertNotEqual(r["sessionId"], withtokens["sessionId"])
        self.assertIn("PAM session %s of customer %s opened (uid 0)\n" % (r["sessionId"], r["customerId"]),
                      self.idmd.log_text())
        self.assertIn("PAM session %s of customer %s opened (uid 0), tokens sent" %
                      (withtokens["sessionId"], r["customerId"]), self.idmd.log_text())
        # a boolean, nothing else
        for bad in ("yes", 1, None):
            self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD, tokens=bad)), -32602)

    def test_authenticate_refusals(self):
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password="wrong password 1")),
                         401, "invalid_credentials")
        # root (PAM as root) may learn that the user does not exist, others may not
        self.assertError(self.idmd.error("pamAuthenticate", self.p(user="bob@example.com", password=PASSWORD)),
                         401, "unknown_user")
        self.assertError(self.idmd.error("pamAuthenticate", self.p(user="not an e-mail", password=PASSWORD)),
                         401, "unknown_user")
        r = self.idmd.call_as(NOBODY, [
            ["pamAuthenticate", self.p(user="bob@example.com", password=PASSWORD)],
            ["pamAuthenticate", self.p(password="wrong password 2")],
            ["pamAuthenticate", self.p(password=PASSWORD, service="kiosk")],
        ])
        self.assertError(r[0]["error"], 401, "invalid_credentials")
        self.assertError(r[1]["error"], 401, "invalid_credentials")
        self.assertEqual(r[2]["result"]["customerId"], self.customer["customerId"])

        self.assertError(self.idmd.error("pamAuthenticate", self.p(publisherId="999999999", password=PASSWORD)),
                         404, "not_found")
        self.assertError(self.idmd.error("pamAuthenticate", {"user": EMAIL, "password": PASSWORD}), -32602)
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD, color="red")), -32602)
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD, rhost="h" * 1025)), -32602)
        self.assertNotIn("wrong password", self.idmd.log_text())

    # --- pamAccount and who may ask ---

    def test_account_authorization(self):
        self.assertEqual(self.pam("pamAccount"), {"customerId": self.customer["customerId"], "disabled": False,
                                                  "unixUid": None, "consentsUpdateRequired": False, "consents": [],
                                                  "captureRequired": False, "capture": []})
        self.assertEqual(self.pam("pamAccount", user="ALICE@example.com")["customerId"], self.customer["customerId"])
        self.assertError(self.pam_error("pamAccount", user="bob@example.com"), 404, "not_found")
        self.assertError(self.pam_error("pamAccount", publisherId="999999999"), 404, "not_found")

        # an unprivileged peer: 403 until it authenticated the user itself, known user or not
        r = self.idmd.call_as(NOBODY, [
            ["pamAccount", self.p()],
            ["pamAccount", self.p(user="bob@example.com")],
            ["pamAuthenticate", self.p(password=PASSWORD, tokens=True)],
            ["pamAccount", self.p()],
            ["pamAccount", self.p(user="Alice@EXAMPLE.com")],
        ])
        self.assertError(r[0]["error"], 403, "forbidden")
        self.assertError(r[1]["error"], 403, "forbidden")
        self.assertEqual(r[3]["result"]["customerId"], self.customer["customerId"])
        self.assertIs(r[3]["result"]["disabled"], False)
        self.assertIn("result", r[4])
        session = r[2]["result"]

        # another uid gets nothing from nobody's session
        r = self.idmd.call_as(OTHER_UID, [["pamAccount", self.p()],
                                          ["pamAcceptConsents", self.p(consents=[])]])
        self.assertError(r[0]["error"], 403, "forbidden")
        self.assertError(r[1]["error"], 403, "forbidden")

        # once that session is over, nobody is refused again
        self.idmd.call("revokeToken", {"token": session["refreshToken"]})
        r = self.idmd.call_as(NOBODY, [["pamAccount", self.p()]])
        self.assertError(r[0]["error"], 403, "forbidden")

    def test_disabled(self):
        before = self.auth()
        self.assertEqual(self.idmd.call("setCustomerDisabled", {"publisherId": self.pub, "email": EMAIL,
                                                                "disabled": True}),
                         {"customerId": self.customer["customerId"], "disabled": True})
        # disabling ends every session
        self.assertFalse(self.active(before["refreshToken"]))
        self.assertFalse(self.active(self.customer["refreshToken"]))
        self.assertIs(self.pam("pamAccount")["disabled"], True)
        # told only to who proves the password; no tokens
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD)), 403, "account_disabled")
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password="wrong password 3")),
                         401, "invalid_credentials")
        r = self.idmd.call_as(NOBODY, [
            ["pamAuthenticate", self.p(password="wrong password 4")],
            ["pamAuthenticate", self.p(password=PASSWORD)],
            ["setCustomerDisabled", {"publisherId": self.pub, "email": EMAIL, "disabled": False}],
        ])
        self.assertError(r[0]["error"], 401, "invalid_credentials")
        self.assertError(r[1]["error"], 403, "account_disabled")
        self.assertError(r[2]["error"], 403, "forbidden")
        self.assertIs(self.pam("pamAccount")["disabled"], True)

        self.assertEqual(self.idmd.call("setCustomerDisabled", {"publisherId": self.pub, "email": EMAIL,
                                                                "disabled": False})["disabled"], False)
        self.assertIs(self.pam("pamAccount")["disabled"], False)
        self.assertTrue(self.active(self.auth()["refreshToken"]))

        self.assertError(self.idmd.error("setCustomerDisabled", {"publisherId": self.pub, "email": "bob@example.com",
                                                                 "disabled": True}), 404, "not_found")
        self.assertError(self.idmd.error("setCustomerDisabled", {"publisherId": self.pub, "email": EMAIL}), -32602)
        self.assertError(self.idmd.error("setCustomerDisabled", {"publisherId": self.pub, "email": EMAIL,
                                                                 "disabled": "yes"}), -32602)

    # --- consents on the PAM path ---

    def test_consents(self):
        terms = {"name": "terms", "label": "Terms of Service", "required": True}
        news = {"name": "news", "label": "Newsletter", "required": False}
        self.idmd.call("setPublisherConsents", {"publisherToken": self.token, "consents": [terms, news]})
        a = self.pam("pamAccount")
        self.assertIs(a["consentsUpdateRequired"], True)
        self.assertEqual(a["consents"], [{"name": "terms", "label": "Terms of Service", "version": 1}])

        self.assertEqual(self.pam("pamAcceptConsents",
                                  consents=[{"name": "terms", "version": 1, "state": "accepted"}]), {})
        self.assertEqual(self.pam("pamAccount")["consents"], [])

        # a new version: outdated again; only the current version may be accepted
        self.idmd.call("setPublisherConsents", {"publisherToken": self.token,
                                                "consents": [dict(terms, label="Terms of Service (2)"), news]})
        a = self.pam("pamAccount")
        self.assertEqual((a["consentsUpdateRequired"], a["consents"]),
                         (True, [{"name": "terms", "label": "Terms of Service (2)", "version": 2}]))
        self.assertError(self.pam_error("pamAcceptConsents",
                                        consents=[{"name": "terms", "version": 1, "state": "accepted"}]),
                         409, "version_mismatch")
        self.assertError(self.pam_error("pamAcceptConsents",
                                        consents=[{"name": "nope", "version": 1, "state": "accepted"}]),
                         400, "invalid_value")
        self.assertError(self.pam_error("pamAcceptConsents", consents=[{"name": "terms"}]), -32602)
        self.assertError(self.pam_error("pamAcceptConsents", user="bob@example.com", consents=[]), 404)
        self.assertIs(self.pam("pamAccount")["consentsUpdateRequired"], True)

        # the peer that authenticated the user may answer (PAM's consents=prompt as that uid)
        r = self.idmd.call_as(NOBODY, [
            ["pamAcceptConsents", self.p(consents=[{"name": "terms", "version": 2, "state": "accepted"}])],
            ["pamAuthenticate", self.p(password=PASSWORD)],
            ["pamAcceptConsents", self.p(consents=[{"name": "terms", "version": 2, "state": "accepted"}])],
            ["pamAccount", self.p()],
        ])
        self.assertError(r[0]["error"], 403, "forbidden")
        self.assertEqual(r[2]["result"], {})
        self.assertIs(r[3]["result"]["consentsUpdateRequired"], False)
        login = self.idmd.call("login", {"email": EMAIL, "password": PASSWORD, "publisherId": self.pub})
        self.assertIs(login["consentsUpdateRequired"], False)
        mine = {c["name"]: c for c in self.idmd.call("getCustomerConsents", {"jwt": login["jwt"]})["consents"]}
        self.assertEqual((mine["terms"]["state"], mine["terms"]["version"]), ("accepted", 2))

    # --- pamChangePassword ---

    def test_change_password(self):
        session = self.auth()
        # PAM_PRELIM_CHECK: only the old password
        self.assertEqual(self.pam("pamChangePassword", oldPassword=PASSWORD), {})
        self.assertTrue(self.active(session["refreshToken"]))
        self.assertError(self.pam_error("pamChangePassword", oldPassword="wrong password 5"),
                         401, "invalid_credentials")
        self.assertError(self.pam_error("pamChangePassword", user="bob@example.com", oldPassword=PASSWORD),
                         401, "invalid_credentials")
        # the policy, with its message
        e = self.pam_error("pamChangePassword", oldPassword=PASSWORD, newPassword="short1")
        self.assertError(e, 400, "weak_password")
        self.assertEqual(e["message"], "password is too short")
        e = self.pam_error("pamChangePassword", oldPassword=PASSWORD, newPassword="onlyletterslong")
        self.assertEqual(e["message"], "password needs a digit or a symbol")
        self.assertError(self.pam_error("pamChangePassword", oldPassword="wrong password 6",
                                        newPassword=NEW_PASSWORD), 401, "invalid_credentials")
        self.assertTrue(self.active(session["refreshToken"]))

        # anyone who knows the old password may change it: an unprivileged peer here
        r = self.idmd.call_as(NOBODY, [
            ["pamChangePassword", self.p(oldPassword=PASSWORD)],
            ["pamChangePassword", self.p(oldPassword=PASSWORD, newPassword=NEW_PASSWORD)],
        ])
        self.assertEqual(r[0]["result"], {})
        self.assertEqual(r[1]["result"], {})
        # every session ended; the new password works, the old one does not
        self.assertFalse(self.active(session["refreshToken"]))
        self.assertFalse(self.active(self.customer["refreshToken"]))
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD)), 401, "invalid_credentials")
        self.assertTrue(self.active(self.auth(password=NEW_PASSWORD)["refreshToken"]))
        self.assertEqual(self.idmd.call("login", {"email": EMAIL, "password": NEW_PASSWORD,
                                                  "publisherId": self.pub})["customerId"],
                         self.customer["customerId"])
        log = self.idmd.log_text()
        for secret in (PASSWORD, NEW_PASSWORD, "wrong password"):
            self.assertNotIn(secret, log)

    def test_change_password_counts_towards_lockout(self):
        # [lockout] deny = 5 by default: verifying old passwords is a login attempt like any other
        for i in range(5):
            self.assertError(self.pam_error("pamChangePassword", oldPassword="wrong password %d" % i),
                             401, "invalid_credentials")
        e = self.pam_error("pamChangePassword", oldPassword=PASSWORD)
        self.assertError(e, 423, "account_locked")
        self.assertGreater(e["data"]["retryAfter"], 0)
        self.assertError(self.idmd.error("pamAuthenticate", self.p(password=PASSWORD)), 423, "account_locked")

    # --- pamCloseSession ---

    def test_close_session(self):
        a = self.auth()
        b = self.auth()
        # by sessionId: that session only
        self.assertEqual(self.pam("pamCloseSession", sessionId=a["sessionId"]), {})
        self.assertFalse(self.active(a["refreshToken"]))
        self.assertFalse(self.active(a["customerToken"]))
        self.assertTrue(self.active(b["refreshToken"]))
        # without: the one this uid opened last for the user (b; the record was not a's)
        self.assertEqual(self.pam("pamCloseSession"), {})
        self.assertFalse(self.active(b["refreshToken"]))
        # nothing left, unknown ids, unknown users: {} all the same
        self.assertEqual(self.pam("pamCloseSession"), {})
        self.assertEqual(self.pam("pamCloseSession", sessionId="AAAAAAAAAAAAAAAAAAAAAA"), {})
        self.assertEqual(self.pam("pamCloseSession", sessionId="not a session id!"), {})
        self.assertEqual(self.pam("pamCloseSession", user="bob@example.com"), {})
        self.assertError(self.pam_error("pamCloseSession", sessionId="x" * 65), -32602)

        # a session of another user is not closed by naming it for this one
        self.register("bob@example.com")
        bob = self.auth(user="bob@example.com")
        self.assertEqual(self.pam("pamCloseSession", sessionId=bob["sessionId"]), {})
        self.assertTrue(self.active(bob["refreshToken"]))

        # an unprivileged peer closes the session it opened, without knowing its id
        r = self.idmd.call_as(NOBODY, [
            ["pamAuthenticate", self.p(password=PASSWORD, tokens=True)],
            ["pamAccount", self.p()],
            ["pamCloseSession", self.p()],
            ["pamAccount", self.p()],
        ])
        self.assertIn("result", r[1])
        self.assertEqual(r[2]["result"], {})
        self.assertError(r[3]["error"], 403, "forbidden")
        self.assertFalse(self.active(r[0]["result"]["refreshToken"]))

        # and another uid cannot close it by user name alone
        c = self.idmd.call_as(NOBODY, [["pamAuthenticate", self.p(password=PASSWORD, tokens=True)]])[0]["result"]
        self.assertEqual(self.idmd.call_as(OTHER_UID, [["pamCloseSession", self.p()]])[0]["result"], {})
        self.assertTrue(self.active(c["refreshToken"]))
        # nor by its sessionId, which is no secret (the "sid" of every JWT of the session)
        r = self.idmd.call_as(OTHER_UID, [["pamCloseSession", self.p(sessionId=c["sessionId"])]])
        self.assertEqual(r[0]["result"], {})
        self.assertTrue(self.active(c["refreshToken"]))
        # the uid that opened it can
        r = self.idmd.call_as(NOBODY, [["pamCloseSession", self.p(sessionId=c["sessionId"])]])
        self.assertEqual(r[0]["result"], {})
        self.assertFalse(self.active(c["refreshToken"]))


if __name__ == "__main__":
    main()
