# SPDX-License-Identifier: MIT
"""Forgot password at the prompt (reset=code) through the real libpam and a real idmd: an empty
password offers a code by mail; the code (read from the mail when its prompt comes) and a new
password typed twice set the password and sign the customer in with it; declining, a wrong code,
passwords that differ and a weak password fail with a message and change nothing; an unknown
address gets the same prompts; without reset=code an empty password is just wrong."""

import re
import shutil
import tempfile

from idmtest import Mailbox, mail_config
from pamtest import PASSWORD, PamTestCase, main

NEW_PASSWORD = "battery staple 10"
CODE_PROMPT = "prompt-on Code from the e-mail: "
CONFIRM = "Forgot your password? A code will be sent to your e-mail address [y/N] "


class TestReset(PamTestCase):
    NEEDS = ("requestPasswordReset", "updatePassword")

    def setUp(self):
        # The outbox delivers through the fake sendmail into a directory the test reads.
        self.maildir = tempfile.mkdtemp(prefix="idm-mail-")
        self.addCleanup(shutil.rmtree, self.maildir, ignore_errors=True)
        self.CONFIG = mail_config(self.maildir)
        super().setUp()
        self.mailbox = Mailbox(self.idmd, self.maildir)
        self.mailed = []

    def codes(self):
        """The codes mailed so far, oldest first."""
        for msg in self.mailbox.new():
            text = msg.get_body(preferencelist=("plain",)).get_content()
            self.mailed.append(re.search(r"^\s+([0-9]{8})\s*$", text, re.M).group(1))
        return self.mailed

    def answer_code(self, line):
        return self.codes()[-1] if line == CODE_PROMPT else None

    def login_ok(self, password):
        with self.idmd.client() as c:
            return "result" in c.request("login", {"email": self.EMAIL, "password": password,
                                                   "publisherId": self.publisher})

    def test_reset_and_sign_in(self):
        svc = self.idm_service("kiosk", "reset=code", "export_env")
        r = self.drive_interactive(svc, self.EMAIL, "auth", "acct", "open", "env", "close",
                                   pw=["", NEW_PASSWORD, NEW_PASSWORD], echo=["y", "@stdin"],
                                   answer=self.answer_code)
        self.assertEqual(r.prompts, [("prompt-off", "Password: "), ("prompt-on", CONFIRM),
                                     ("prompt-on", "Code from the e-mail: "), ("prompt-off", "New password: "),
                                     ("prompt-off", "Retype new password: ")], r)
        self.assertEqual(r.infos, ["If this address has an account, a code is on its way to it.",
                                   "Your password has been changed."], r)
        self.assertEqual(r.env["IDM_CUSTOMER_ID"], self.customer["customerId"])
        self.assertTrue(r.logged(f"password of '{self.EMAIL}' reset with a code"), r)
        self.assertTrue(self.login_ok(NEW_PASSWORD))
        self.assertFalse(self.login_ok(PASSWORD))

    def test_refusals_change_nothing(self):
        svc = self.idm_service("kiosk", "reset=code")
        # Declined: no mail.
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[""], echo=["n"])
        self.assertEqual(self.codes(), [])
        # A wrong code.
        r = self.drive_interactive(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["", NEW_PASSWORD, NEW_PASSWORD],
                                   echo=["y", "@stdin"],
                                   answer=lambda line: ("0" * 8 if self.codes()[-1] != "0" * 8 else "1" * 8)
                                   if line == CODE_PROMPT else None)
        self.assertEqual(r.errors, ["The code is not valid, or has expired."], r)
        # Passwords that differ: idmd is not even asked.
        r = self.drive_interactive(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["", NEW_PASSWORD, "other horse 3"],
                                   echo=["y", "@stdin"], answer=self.answer_code)
        self.assertEqual(r.errors, ["Sorry, the passwords do not match."], r)
        # A weak password: idmd's message.
        r = self.drive_interactive(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["", "short", "short"],
                                   echo=["y", "@stdin"], answer=self.answer_code)
        self.assertEqual(len(r.errors), 1, r)
        self.assertIn("too short", r.errors[0])
        self.assertTrue(self.login_ok(PASSWORD))

    def test_unknown_address_sees_the_same(self):
        svc = self.idm_service("kiosk", "reset=code")
        r = self.drive_interactive(svc, "nobody@example.com", "auth=PAM_AUTH_ERR",
                                   pw=["", NEW_PASSWORD, NEW_PASSWORD], echo=["y", "12345678"],
                                   answer=lambda line: None)
        self.assertEqual([p[1] for p in r.prompts], ["Password: ", CONFIRM, "Code from the e-mail: ",
                                                    "New password: ", "Retype new password: "], r)
        self.assertEqual(r.infos, ["If this address has an account, a code is on its way to it."], r)
        self.assertEqual(r.errors, ["The code is not valid, or has expired."], r)
        self.assertEqual(self.codes(), [])

    def test_without_reset_option(self):
        r = self.ok(self.idm_service("plain"), self.EMAIL, "auth=PAM_AUTH_ERR", pw=[""], echo=["y"])
        self.assertEqual(r.prompts, [("prompt-off", "Password: ")], r)


if __name__ == "__main__":
    main()
