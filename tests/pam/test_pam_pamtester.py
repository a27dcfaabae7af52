# SPDX-License-Identifier: MIT
"""pamtester, a PAM client nobody here wrote, drives pam_idm.so (under pam_wrapper) against a real
idmd: a full login, a wrong password, an unknown user, a password change."""

import shutil
import subprocess
import time
import unittest

from pamtest import NOBODY, PASSWORD, SANITIZED, PamTestCase, main, pam_env, pam_wrapper_lock


# pamtester is not instrumented: a module built with clang's ASan cannot even be loaded into it.
# Under sanitizers pam-drive (built with them) covers the same transactions.
@unittest.skipIf(SANITIZED, "pamtester is not built with sanitizers")
@unittest.skipUnless(shutil.which("pamtester"), "pamtester not installed")
class TestPamtester(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "pamChangePassword", "pamCloseSession")

    def pamtester(self, service, user, *ops, stdin="", as_nobody=False):
        argv = ["pamtester", "-v", service, user] + list(ops)
        if as_nobody:
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + argv
        with pam_wrapper_lock():
            start = time.monotonic()
            p = subprocess.run(argv, input=stdin, env=pam_env(self.svcdir, debuglevel=0), capture_output=True,
                               text=True, timeout=60)
            p.elapsed = time.monotonic() - start
        return p

    def test_login(self):
        svc = self.idm_service("pamtester")
        p = self.pamtester(svc, self.EMAIL, "authenticate", "acct_mgmt", "open_session", "close_session",
                           stdin=PASSWORD + "\n")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.splitlines(), ["pamtester: successfully authenticated",
                                                 "pamtester: account management done.",
                                                 "pamtester: successfully opened a session",
                                                 "pamtester: session has successfully been closed."], p)

    def test_wrong_password(self):
        svc = self.idm_service("pamtester")
        p = self.pamtester(svc, self.EMAIL, "authenticate", stdin="Wrong-passw0rd\n")
        self.assertNotEqual(p.returncode, 0, p)
        self.assertIn("Authentication failure", p.stdout + p.stderr, p)
        # pamtester sets no delay function: libpam sleeps the ~2 s pam_idm asked for.
        self.assertGreater(p.elapsed, 0.9, p)

    def test_unknown_user(self):
        svc = self.idm_service("pamtester")
        p = self.pamtester(svc, "nobody@example.com", "authenticate", stdin="Wrong-passw0rd\n")
        self.assertIn("User not known to the underlying authentication module", p.stdout + p.stderr, p)
        p = self.pamtester(svc, "nobody@example.com", "authenticate", stdin="Wrong-passw0rd\n", as_nobody=True)
        self.assertIn("Authentication failure", p.stdout + p.stderr, p)

    def test_chauthtok(self):
        svc = self.idm_service("pamtester")
        p = self.pamtester(svc, self.EMAIL, "chauthtok", stdin=f"{PASSWORD}\nN3w-password\nN3w-password\n")
        self.assertEqual(p.returncode, 0, p)
        p = self.pamtester(svc, self.EMAIL, "authenticate", stdin="N3w-password\n")
        self.assertEqual(p.returncode, 0, p)


if __name__ == "__main__":
    main()
