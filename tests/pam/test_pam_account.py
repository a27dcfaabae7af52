# SPDX-License-Identifier: MIT
"""pam_sm_acct_mgmt through a real idmd: the consent prompt (consents=prompt) accepted and
declined, consents=deny and consents=ignore, a new consent version, a conversation that cannot
answer, a disabled account, unknown users, and who may ask (root; an unprivileged uid only after
it authenticated the user; a setuid-root program run by a user only about a customer it
authenticated in the same transaction or about that user's own name, and otherwise told
PAM_PERM_DENIED whether the customer exists or not)."""

import os

from pamtest import NOBODY, NSS_WRAPPER_LIB, PAM_WRAPPER_LIB, PASSWORD, PamTestCase, main

PAM_PERMIT = "/usr/lib/x86_64-linux-gnu/security/pam_permit.so"


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

    def test_setuid_caller_is_not_told_who_exists(self):
        # su and other setuid-root programs run by an ordinary user: idmd sees effective uid 0, an
        # administrator, and would answer anything. The module answers an unknown user, and a
        # customer this transaction has not authenticated, alike: PAM_PERM_DENIED, no prompt, no
        # message; what idmd answers an unprivileged peer about either.
        self.set_terms()
        svc = self.idm_service("su")
        unknown = self.ok(svc, "nobody@example.com", "acct=PAM_PERM_DENIED", echo=["y"], ruid=NOBODY)
        known = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["y"], ruid=NOBODY)
        for r in (unknown, known):
            self.assertEqual((r.prompts, r.errors, r.infos), ([], [], []), r)
            self.assertTrue(r.logged(f"pamAccount: not asked for uid {NOBODY}"), r)
            self.assertFalse(r.logged("unknown user"), r)
        self.assertIsNone(self.consents()["terms"]["state"])
        # Nor as PAM_IGNORE, nor through a stack that lets unknown users fall through to local
        # accounts (the login stack of docs/pam_idm.md): both end alike.
        ignore = self.idm_service("su-ignore", "ignore_unknown_user")
        mixed = self.service("su-mixed",
                             f"account [success=done user_unknown=ignore ignore=ignore default=bad] "
                             f"{self.idm('ignore_unknown_user')}",
                             f"account required {PAM_PERMIT}")
        for s in (ignore, mixed):
            self.ok(s, "nobody@example.com", "acct=PAM_PERM_DENIED", ruid=NOBODY)
            self.ok(s, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["y"], ruid=NOBODY)
        # A disabled customer is not told apart either.
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": True})
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", ruid=NOBODY)
        self.assertEqual(r.errors, [], r)
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": False})

        # Root (real uid 0) is still told.
        self.ok(svc, "nobody@example.com", "acct=PAM_USER_UNKNOWN")
        self.ok(mixed, "nobody@example.com", "acct")
        # A name that is no e-mail address reveals nothing about idmd: PAM_USER_UNKNOWN for all.
        self.ok(svc, "root", "acct=PAM_USER_UNKNOWN", ruid=NOBODY)
        self.ok(mixed, "root", "acct", ruid=NOBODY)

        # What su does: authenticate the customer, then the account step about that customer.
        r = self.ok(svc, self.EMAIL, "auth", "acct", pw=[PASSWORD], echo=["y"], ruid=NOBODY)
        self.assertEqual([p[0] for p in r.prompts], ["prompt-off", "prompt-on"], r)
        self.assertEqual(self.consents()["terms"]["state"], "accepted")

    def test_setuid_caller_about_its_own_name(self):
        # sudo: PAM_USER is the invoking user (a customer mapped to a Unix account through NSS),
        # and with cached credentials only the account step runs. That reveals nothing about
        # anybody else: answered as for root.
        t = self.idmd.tmp
        with open(os.path.join(t, "passwd"), "w") as f:
            f.write(f"root:x:0:0:root:/root:/bin/sh\n{self.EMAIL}:x:4242:4242::/:/bin/sh\n"
                    "carol@example.com:x:4243:4243::/:/bin/sh\n")
        with open(os.path.join(t, "group"), "w") as f:
            f.write("root:x:0:\n")
        nss = {"LD_PRELOAD": f"{PAM_WRAPPER_LIB} {NSS_WRAPPER_LIB}",
               "NSS_WRAPPER_PASSWD": os.path.join(t, "passwd"), "NSS_WRAPPER_GROUP": os.path.join(t, "group")}
        self.set_terms()
        svc = self.idm_service("sudo")
        r = self.ok(svc, self.EMAIL, "acct", echo=["y"], ruid=4242, env=nss)
        self.assertEqual(len(r.prompts), 1, r)
        # A local account that is no customer: its own user learns that, and falls through.
        self.ok(svc, "carol@example.com", "acct=PAM_USER_UNKNOWN", ruid=4243, env=nss)
        # Anyone else's name: not told.
        self.ok(svc, "carol@example.com", "acct=PAM_PERM_DENIED", ruid=4242, env=nss)
        self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["y"], ruid=4243, env=nss)

    def test_unix(self):
        # unix: the name must resolve (NSS; nss_wrapper here, nss-systemd asking idmd in
        # production) to the uid idmd gave the customer.
        t = self.idmd.tmp

        def nss(line):
            with open(os.path.join(t, "passwd"), "w") as f:
                f.write("root:x:0:0:root:/root:/bin/sh\n" + (line + "\n" if line else ""))
            with open(os.path.join(t, "group"), "w") as f:
                f.write("root:x:0:\n")
            return {"LD_PRELOAD": f"{PAM_WRAPPER_LIB} {NSS_WRAPPER_LIB}",
                    "NSS_WRAPPER_PASSWD": os.path.join(t, "passwd"), "NSS_WRAPPER_GROUP": os.path.join(t, "group")}

        svc = self.idm_service("unix", "unix")
        # Not a Unix user (its publisher has none): refused, even with a local account of its name.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", env=nss(f"{self.EMAIL}:x:4242:4242::/:/bin/sh"))
        self.assertEqual(r.errors, ["Your account may not log in on this machine."], r)
        self.assertTrue(r.logged(f"'{self.EMAIL}' is not a Unix user of idmd"), r)
        self.idmd.call("updatePublisher", {"publisherId": self.publisher, "unixUsers": "enabled"})
        uid = self.idmd.call("setCustomerUnix", {"publisherId": self.publisher, "email": self.EMAIL,
                                                 "enabled": True})["unixUid"]
        # The name resolves to the customer's uid: fine.
        self.ok(svc, self.EMAIL, "acct", env=nss(f"{self.EMAIL}:x:{uid}:{uid}::/:/bin/sh"))
        # A local account with the customer's name and another uid: refused, said why.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", env=nss(f"{self.EMAIL}:x:4242:4242::/:/bin/sh"))
        self.assertEqual(r.errors, ["Your account cannot log in on this machine: its Unix user does not match."], r)
        self.assertTrue(r.logged(f"resolves to uid 4242, not to the customer's uid {uid}"), r)
        # The name does not resolve at all (no nss-systemd, userdb off): refused.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", env=nss(None))
        self.assertTrue(r.logged("does not resolve to a Unix user"), r)
        # Without unix, the module does not look (as before).
        self.ok(self.idm_service("plain"), self.EMAIL, "acct", env=nss(f"{self.EMAIL}:x:4242:4242::/:/bin/sh"))
        # The publisher turns Unix users off: refused again.
        self.idmd.call("updatePublisher", {"publisherId": self.publisher, "unixUsers": "none"})
        self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", env=nss(f"{self.EMAIL}:x:{uid}:{uid}::/:/bin/sh"))

    def test_disabled(self):
        svc = self.idm_service("idm")
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": True})
        r = self.ok(svc, self.EMAIL, "acct=PAM_ACCT_EXPIRED")
        self.assertTrue(r.logged(f"account of '{self.EMAIL}' is disabled"), r)
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": False})
        self.ok(svc, self.EMAIL, "acct")


if __name__ == "__main__":
    main()
