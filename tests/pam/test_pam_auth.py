# SPDX-License-Identifier: MIT
"""pam_sm_authenticate through a real idmd: success with the PAM context reaching idmd, every
failure code (wrong password, unknown user as root, as an unprivileged uid and as a setuid-root
program run by one, another publisher's
customer, lockout and rate limit with their messages, a disabled account), offer=, stacking with
use_first_pass / try_first_pass behind pam_matrix, and the environment export."""

from pamtest import NOBODY, PAM_MATRIX, PAM_SET_ITEMS, PASSWORD, PamTestCase, main

WRONG = "Wrong-passw0rd"


class TestAuthenticate(PamTestCase):
    NEEDS = ("pamAuthenticate",)

    def test_success_with_context(self):
        svc = self.idm_service("kiosk", "export_env")
        r = self.ok(svc, self.EMAIL, "auth", "setcred", "env", pw=[PASSWORD], rhost="192.0.2.9", tty="pts/3",
                    ruser="bob")
        self.assertEqual(r.prompts, [("prompt-off", "Password: ")])
        self.assertFalse(r.faildelay, r)        # libpam only delays failures
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        self.assertEqual(r.env.get("IDM_PUBLISHER_ID"), self.publisher, r)
        self.assertNotIn("IDM_ACCESS_TOKEN", r.env)
        self.assertNotIn("IDM_REFRESH_TOKEN", r.env)
        # idmd got the PAM context for its log (and rate limits).
        log = self.idmd.log_text()
        self.assertIn("service 'kiosk', rhost '192.0.2.9', tty 'pts/3', ruser 'bob'", log)
        self.assertNotIn(PASSWORD, log)
        # The e-mail is matched case-insensitively.
        self.ok(svc, self.EMAIL.upper(), "auth", pw=[PASSWORD])

    def test_no_env_without_export_env(self):
        svc = self.idm_service("plain")
        r = self.ok(svc, self.EMAIL, "auth", "env", pw=[PASSWORD])
        # Only the session id, which is always there (docs/pam_idm.md, "The environment").
        self.assertEqual([k for k in r.env if k.startswith("IDM_")], ["IDM_SESSION_ID"], r)
        self.assertRegex(r.env["IDM_SESSION_ID"], r"^[A-Za-z0-9_-]{1,64}$")

    def test_export_tokens(self):
        svc = self.idm_service("tokens", "export_tokens")
        r = self.ok(svc, self.EMAIL, "auth", "env", pw=[PASSWORD])
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        for name in ("IDM_ACCESS_TOKEN", "IDM_REFRESH_TOKEN"):
            info = self.idmd.call("introspectToken", {"token": r.env[name]})
            self.assertTrue(info["active"], (name, info))
            self.assertEqual(info["customerId"], self.customer["customerId"])

    def test_wrong_password(self):
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", "setcred=PAM_AUTH_ERR", pw=[WRONG])
        self.assertTrue(r.faildelay, r)
        self.assertTrue(r.logged(f"pamAuthenticate: refused for user '{self.EMAIL}': 401 invalid_credentials"), r)
        self.assertEqual(r.errors, [])
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG], as_nobody=True)
        self.assertTrue(r.faildelay, r)
        # Empty and oversized passwords never reach idmd.
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[""])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["x" * 1025])
        # A conversation that gives no password at all.
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR")

    def test_unknown_user_as_root(self):
        svc = self.idm_service("idm")
        r = self.ok(svc, "nobody@example.com", "auth=PAM_USER_UNKNOWN", pw=[WRONG])
        self.assertTrue(r.faildelay, r)
        self.assertTrue(r.logged("pamAuthenticate: unknown user"), r)
        self.assertFalse(r.logged("nobody@example.com"), r)     # may be a mistyped password

    def test_unknown_user_as_unprivileged_uid(self):
        svc = self.idm_service("idm")
        self.ok(svc, "nobody@example.com", "auth=PAM_AUTH_ERR", pw=[WRONG], as_nobody=True)
        # ... and the right password works for an unprivileged caller too.
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD], as_nobody=True)

    def test_unknown_user_under_setuid_root(self):
        # su and other setuid-root programs: idmd sees effective uid 0 and says "unknown user",
        # but the real uid is an ordinary user's, who must not learn who is a customer.
        svc = self.idm_service("su")
        r = self.ok(svc, "nobody@example.com", "auth=PAM_AUTH_ERR", pw=[WRONG], ruid=NOBODY)
        self.assertTrue(r.faildelay, r)
        self.assertTrue(r.logged(f"pamAuthenticate: unknown user \\(not told to uid {NOBODY}\\)"), r)
        self.assertFalse(r.logged("nobody@example.com"), r)
        # Not even as PAM_IGNORE (a stack would behave differently).
        svc = self.idm_service("su-ignore", "ignore_unknown_user")
        self.ok(svc, "nobody@example.com", "auth=PAM_AUTH_ERR", pw=[WRONG], ruid=NOBODY)
        self.ok(svc, "nobody@example.com", "auth=PAM_PERM_DENIED", pw=[WRONG])     # PAM_IGNORE alone
        # Known customers are unaffected; a name that is no e-mail address stays PAM_USER_UNKNOWN
        # (that reveals nothing about idmd, and keeps local accounts working in mixed stacks).
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD], ruid=NOBODY)
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG], ruid=NOBODY)
        self.ok(svc, "root", "auth=PAM_PERM_DENIED", ruid=NOBODY)                  # PAM_IGNORE alone
        self.ok(self.idm_service("su-plain"), "root", "auth=PAM_USER_UNKNOWN", ruid=NOBODY)

    def test_ignore_unknown_user_falls_through(self):
        passdb = self.matrix_passdb(("local@example.com", "local-Passw0rd", "mixed"))
        svc = self.service("mixed",
                           f"auth [success=done ignore=ignore default=die] {self.idm('ignore_unknown_user')}",
                           f"auth required {PAM_MATRIX} passdb={passdb}")
        self.ok(svc, "local@example.com", "auth", pw=["local-Passw0rd", "local-Passw0rd"])
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG])

    def test_customer_of_another_publisher(self):
        other = self.create_publisher(name="Other")["publisherId"]
        self.register("bob@example.com", "B0b-password", publisher=other)
        svc = self.idm_service("idm")
        # bob exists, but not for this module's publisher.
        self.ok(svc, "bob@example.com", "auth=PAM_USER_UNKNOWN", pw=["B0b-password"])
        self.ok(svc, "bob@example.com", "auth=PAM_AUTH_ERR", pw=["B0b-password"], as_nobody=True)
        # alice at the other publisher is another customer, with her own password.
        self.register(self.EMAIL, "0ther-password", publisher=other)
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["0ther-password"])
        svc = self.idm_service("other", "export_env", publisher=other)
        r = self.ok(svc, self.EMAIL, "auth", "env", pw=["0ther-password"])
        self.assertEqual(r.env["IDM_PUBLISHER_ID"], other)
        self.assertNotEqual(r.env["IDM_CUSTOMER_ID"], self.customer["customerId"])

    def test_offer(self):
        self.idmd.call("addOffer", {"publisherId": self.publisher, "offerId": "S123456789_GB"})
        svc = self.service("offer", f"auth required {self.idm('offer=S123456789_GB', 'export_env', publisher=False)}")
        r = self.ok(svc, self.EMAIL, "auth", "env", pw=[PASSWORD])
        self.assertEqual(r.env["IDM_PUBLISHER_ID"], self.publisher)
        # An offer idmd does not know: a configuration error.
        svc = self.service("nooffer", f"auth required {self.idm('offer=NOPE_GB', publisher=False)}")
        self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])

    def test_unknown_publisher(self):
        svc = self.idm_service("nopub", publisher="999999999")
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])
        self.assertTrue(r.logged("idmd refused the request: 404"), r)

    def test_lockout_gives_maxtries_with_message(self):
        svc = self.idm_service("idm")
        for _ in range(5):
            self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG])
        for pw in (WRONG, PASSWORD):    # locked: even the right password
            r = self.ok(svc, self.EMAIL, "auth=PAM_MAXTRIES", pw=[pw])
            self.assertEqual(r.errors, ["This account is locked after too many failed attempts. "
                                        "Try again in 10 minutes."], r)
            self.assertTrue(r.faildelay, r)
            self.assertTrue(r.logged("423 account_locked"), r)
        # PAM_SILENT: the same code, no message.
        r = self.ok(svc, self.EMAIL, "auth=PAM_MAXTRIES", pw=[PASSWORD], silent=True)
        self.assertEqual(r.errors, [])
        # The PAM path tells an unprivileged caller too (docs/ratelimits.md).
        self.ok(svc, self.EMAIL, "auth=PAM_MAXTRIES", pw=[PASSWORD], as_nobody=True)
        # Unlocked by the operator: in again.
        self.idmd.call("unlockCustomer", {"publisherId": self.publisher, "email": self.EMAIL})
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])

    def test_disabled_account(self):
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": True})
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD])
        self.assertEqual(r.errors, ["Your account has been disabled."], r)
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG])
        self.assertEqual(r.errors, [], r)       # only told with the right password
        r = self.ok(svc, self.EMAIL, "acct=PAM_ACCT_EXPIRED")
        self.assertEqual(r.errors, ["Your account has been disabled."], r)


class TestRateLimit(PamTestCase):
    NEEDS = ("pamAuthenticate",)
    CONFIG = "[ratelimit.login]\nrate = 1\nburst = 2\nconcurrency = 20\n"

    def test_rate_limited_gives_maxtries_with_message(self):
        svc = self.idm_service("idm")
        for _ in range(10):
            r = self.drive(svc, self.EMAIL, "auth", pw=[PASSWORD])
            if r.code("auth") != "PAM_SUCCESS":
                break
        self.assertEqual(r.code("auth"), "PAM_MAXTRIES", r)
        self.assertEqual(len(r.errors), 1, r)
        self.assertRegex(r.errors[0], r"^Too many attempts\. Try again in \d+ (second|minute)s?\.$")
        self.assertTrue(r.logged("429 rate_limited"), r)


class TestStacking(PamTestCase):
    NEEDS = ("pamAuthenticate",)

    def stack(self, name, *opts):
        # pam_set_items stands for any module stacked before pam_idm that sets PAM_AUTHTOK (it takes
        # the value from the environment). pam_matrix cannot: it blanks PAM_AUTHTOK after use.
        return self.service(name, f"auth optional {PAM_SET_ITEMS}", f"auth required {self.idm(*opts)}")

    def test_use_first_pass(self):
        svc = self.stack("stack", "use_first_pass")
        r = self.ok(svc, self.EMAIL, "auth", env={"PAM_AUTHTOK": PASSWORD})
        self.assertEqual(r.prompts, [], r)
        # The stacked password is used as it is: wrong means no second chance, and no prompt.
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD], env={"PAM_AUTHTOK": WRONG})
        self.assertEqual(r.prompts, [], r)
        # No stacked password: use_first_pass fails without asking.
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD])
        self.assertEqual(r.prompts, [], r)

    def test_try_first_pass(self):
        svc = self.stack("stack", "try_first_pass")
        r = self.ok(svc, self.EMAIL, "auth", env={"PAM_AUTHTOK": PASSWORD})
        self.assertEqual(r.prompts, [], r)
        # No stacked password: try_first_pass asks.
        r = self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])
        self.assertEqual(r.prompts, [("prompt-off", "Password: ")], r)
        # Without either option pam_get_authtok() still takes a stacked password first (Linux-PAM
        # behaviour); the options only matter when none is set.
        svc = self.stack("plain")
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD], env={"PAM_AUTHTOK": WRONG})
        self.assertEqual(r.prompts, [], r)
        r = self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])
        self.assertEqual(len(r.prompts), 1, r)

    def test_pam_idm_first_then_pam_matrix(self):
        # pam_idm stacked first, pam_matrix after it (a second factor, or local accounts).
        passdb = self.matrix_passdb((self.EMAIL, "matrix-Passw0rd", "both"))
        svc = self.service("both",
                           f"auth required {self.idm()}",
                           f"auth required {PAM_MATRIX} passdb={passdb}")
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD, "matrix-Passw0rd"])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[WRONG, "matrix-Passw0rd"])


if __name__ == "__main__":
    main()
