# SPDX-License-Identifier: MIT
"""The PAM transactions of the other tests, run under valgrind (memcheck, definite leaks are
errors, descriptors tracked): success with account, session, environment and tokens; wrong
password; unknown user; idmd absent; idmd too slow; the consent prompt; a password change and a
policy refusal. Suite 'slow' (about a minute)."""

import os
import shutil
import signal
import unittest

from pamtest import PASSWORD, SANITIZED, PamTestCase, main

VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite", "--track-fds=yes"]


@unittest.skipIf(SANITIZED, "valgrind and sanitizers do not mix")
@unittest.skipUnless(shutil.which("valgrind"), "valgrind not installed")
class TestValgrind(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "pamAcceptConsents", "pamChangePassword", "pamCloseSession")
    CONFIG = "[lockout]\ndeny = 0\n"

    def vg(self, svc, user, *ops, **kw):
        # valgrind does not support RTLD_DEEPBIND either (see the sanitizer note in meson.build).
        env = {"PAM_WRAPPER_DISABLE_DEEPBIND": "1", "UID_WRAPPER_DISABLE_DEEPBIND": "1"}
        r = self.ok(svc, user, *ops, wrapper=VALGRIND, env=env, timeout=300, **kw)
        self.assertIn("ERROR SUMMARY: 0 errors", r.stderr, r)
        self.assertRegex(r.stderr, r"FILE DESCRIPTORS: 3 open \(3 std\) at exit", r)
        return r

    def test_transactions(self):
        svc = self.idm_service("kiosk", "export_tokens")
        self.vg(svc, self.EMAIL, "auth", "setcred", "acct", "open", "env", "close", pw=[PASSWORD], loop=20)
        self.vg(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["Wrong-passw0rd"], loop=5)
        self.vg(svc, "nobody@example.com", "auth=PAM_USER_UNKNOWN", "acct=PAM_USER_UNKNOWN", pw=["x"])
        self.vg(svc, "root", "auth=PAM_USER_UNKNOWN", pw=["x"])
        self.vg(svc, self.EMAIL, "chauthtok=PAM_AUTHTOK_ERR", pw=[PASSWORD, "short", "short"])
        self.vg(svc, self.EMAIL, "chauthtok", pw=[PASSWORD, "N3w-password", "N3w-password"])

    def test_consents(self):
        self.idmd.call("setPublisherConsents", {"publisherId": self.publisher, "consents": [
            {"name": "terms", "label": "Terms", "required": True}]})
        svc = self.idm_service("kiosk")
        self.vg(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=["n"])
        self.vg(svc, self.EMAIL, "acct", echo=["y"])

    def test_unavailable(self):
        svc = self.idm_service("kiosk", "timeout=0.2")
        os.kill(self.idmd.proc.pid, signal.SIGSTOP)
        try:
            self.vg(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD], loop=3)
        finally:
            os.kill(self.idmd.proc.pid, signal.SIGCONT)
        self.idmd.stop()
        self.vg(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", "acct=PAM_USER_UNKNOWN", pw=[PASSWORD])


if __name__ == "__main__":
    main()
