# SPDX-License-Identifier: MIT
"""idmctl auth-test SERVICE USER through the real libpam (under pam_wrapper) and the real idmd: a
good password walks authenticate, account and the session and shows the exported ids; a wrong
one, an unknown customer, a disabled one and an idmd that is not there each end at their step
with the explanation an operator needs; the password is read from standard input and never
printed."""

import os
import subprocess

from pamtest import PASSWORD, PamTestCase, main, pam_env

IDMCTL = os.environ.get("IDMCTL", "idmctl")


class AuthTest(PamTestCase):
    def auth_test(self, service, user, answer=PASSWORD):
        return subprocess.run([IDMCTL, "auth-test", service, user], input=answer + "\n", capture_output=True,
                              text=True, timeout=60, env=pam_env(self.svcdir, debuglevel=0))

    def test_success(self):
        svc = self.idm_service("login", "export_env")
        p = self.auth_test(svc, self.EMAIL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Password: ", p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[:5], [f"Service:      {svc}", f"User:         {self.EMAIL}",
                                     "authenticate: success", "account:      success",
                                     "open session: success"])
        self.assertIn(f"environment:  IDM_CUSTOMER_ID={self.customer['customerId']}", lines)
        self.assertEqual(lines[-1], "close session: success")
        self.assertNotIn(PASSWORD, p.stdout + p.stderr)

    def test_failures_explained(self):
        svc = self.idm_service("login")
        p = self.auth_test(svc, self.EMAIL, "wrong horse 1")
        self.assertEqual(p.returncode, 1)
        self.assertIn("authenticate: Authentication failure", p.stdout)
        self.assertIn("wrong password or code", p.stdout)
        self.assertNotIn("account:", p.stdout)
        self.assertNotIn("wrong horse 1", p.stdout + p.stderr)

        p = self.auth_test(svc, "nobody@example.com")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no such customer", p.stdout)

        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL,
                                               "disabled": True})
        p = self.auth_test(svc, self.EMAIL)
        self.assertEqual(p.returncode, 1)
        self.assertIn("authenticate: Authentication failure", p.stdout)
        self.assertIn("(error message) Your account has been disabled.", p.stderr)

        gone = self.idm_service("gone", socket=os.path.join(self.idmd.tmp, "nothing-here"))
        p = self.auth_test(gone, self.EMAIL)
        self.assertEqual(p.returncode, 1)
        self.assertIn("idmd could not be asked", p.stdout)


if __name__ == "__main__":
    main()
