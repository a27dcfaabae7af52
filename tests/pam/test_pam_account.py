# SPDX-License-Identifier: MIT
"""pam_sm_acct_mgmt through a real idmd: the consent prompt (consents=prompt) accepted and
declined, consents=deny and consents=ignore, a new consent version, a conversation that cannot
answer, a disabled account, unknown users, and who may ask (root; an unprivileged uid only after
it authenticated the user)."""

from pamtest import PASSWORD, PamTestCase, main


class TestAccount(PamTestCase):
    NEEDS = ("pamAccount", "pamAcceptConsents", "setPublisherConsents")

    def set_terms(self, label="Terms"):
        self.idmd.call("setPublisherConsents", {"publisherId": self.publisher, "consents": [
            {"name": "terms", "label": label, "required": True},
            {"name": "newsletter", "label": "Newsletter", "required": False}]})

    def consents(self):
        login = self.idmd.call("login", {"email": self.EMAIL, "password": PASSWORD, "publisherId": self.publisher})
        return {c["name"]: c for c in self.idmd.call("getCustomerConsents", {"jwt": login["jwt"]})["consents"]}

    def test_up_to_date(self):
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "acct")
        self.assertEqual(r.prompts, [])
        self.set_terms()
        self.ok(svc, self.EMAIL, "acct=PAM_SUCCESS", echo=["y"])

    def test_prompt_accepted(self):
        self.set_terms()
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "acct", echo=["y"])
        self.assertEqual(r.prompts, [("prompt-on", "Accept the updated Terms (version 1)? [y/N] ")], r)
        self.assertEqual(self.consents()["terms"]["state"], "accepted")
        # Recorded: no more questions.
        r = self.ok(svc, self.EMAIL, "acct")
        self.assertEqual(r.prompts, [], r)
        # A new version of the terms asks again, with the new version.
        self.set_terms(label="Terms (2026)")
        r = self.ok(svc, self.EMAIL, "acct", echo=[" YES "])
        self.assertEqual(r.prompts, [("prompt-on", "Accept the updated Terms (2026) (version 2)? [y/N] ")], r)
        self.assertEqual(self.consents()["terms"]["version"], 2)

    def test_prompt_declined(self):
        self.set_terms()
        svc = self.idm_service("idm")
        for answer in ("n", "", "maybe"):
            r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=[answer])
            self.assertEqual(len(r.prompts), 1, r)
            self.assertEqual(r.errors, ["You must accept the updated Terms to log in."], r)
            self.assertTrue(r.logged(f"updated consents declined by '{self.EMAIL}'"), r)
        self.assertIsNone(self.consents()["terms"]["state"])
        # A conversation that cannot ask (sshd's monitor, a kiosk without prompts): denied.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED")
        self.assertTrue(r.logged("cannot ask about updated consents"), r)
        # PAM_SILENT suppresses the message, not the question.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["n"], silent=True)
        self.assertEqual(len(r.prompts), 1, r)
        self.assertEqual(r.errors, [], r)

    def test_consents_deny_and_ignore(self):
        self.set_terms()
        svc = self.idm_service("deny", "consents=deny")
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["y"])
        self.assertEqual(r.prompts, [], r)
        self.assertEqual(r.errors, ["You must accept the updated terms before you can log in."], r)
        svc = self.idm_service("ignore", "consents=ignore")
        r = self.ok(svc, self.EMAIL, "acct", echo=["y"])
        self.assertEqual(r.prompts, [], r)
        self.assertIsNone(self.consents()["terms"]["state"])

    def test_full_login_with_consent_prompt(self):
        # What login(1) does: authenticate, account (with the question), session.
        self.set_terms()
        svc = self.idm_service("login", "export_env")
        r = self.ok(svc, self.EMAIL, "auth", "acct", "open", "env", "close", pw=[PASSWORD], echo=["y"])
        self.assertEqual([p[0] for p in r.prompts], ["prompt-off", "prompt-on"], r)
        self.assertEqual(r.env["IDM_CUSTOMER_ID"], self.customer["customerId"])

    def test_unprivileged_caller(self):
        self.set_terms()
        svc = self.idm_service("idm")
        # Not authenticated by this uid: idmd does not tell it anything.
        self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["y"], as_nobody=True)
        self.ok(svc, "nobody@example.com", "acct=PAM_PERM_DENIED", as_nobody=True)
        # After authenticating, the same uid may run the account step and answer.
        r = self.ok(svc, self.EMAIL, "auth", "acct", pw=[PASSWORD], echo=["y"], as_nobody=True)
        self.assertEqual(len(r.prompts), 2, r)
        self.assertEqual(self.consents()["terms"]["state"], "accepted")

    def test_unknown_user(self):
        svc = self.idm_service("idm")
        self.ok(svc, "nobody@example.com", "acct=PAM_USER_UNKNOWN")
        svc = self.idm_service("ignore", "ignore_unknown_user")
        self.ok(svc, "nobody@example.com", "acct=PAM_PERM_DENIED")     # PAM_IGNORE alone decides nothing

    def test_disabled(self):
        svc = self.idm_service("idm")
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": True})
        r = self.ok(svc, self.EMAIL, "acct=PAM_ACCT_EXPIRED")
        self.assertTrue(r.logged(f"account of '{self.EMAIL}' is disabled"), r)
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": False})
        self.ok(svc, self.EMAIL, "acct")


if __name__ == "__main__":
    main()
