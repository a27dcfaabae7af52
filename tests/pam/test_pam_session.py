# SPDX-License-Identifier: MIT
"""pam_sm_open_session / pam_sm_close_session through a real idmd: closing revokes the session's
tokens, by the session id kept in the PAM handle, or, when authentication ran in another process
(sshd), by the IDM_SESSION_ID the PAM environment brought along, and only without either the
session this uid opened last; other sessions stay; the environment export."""

import os
import subprocess

from pamtest import PASSWORD, PamTestCase, main, pam_env, pam_wrapper_lock

KIOSK_EXAMPLE = os.environ.get("KIOSK_EXAMPLE", "kiosk-example")


class TestSession(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamCloseSession")

    def active(self, token):
        return self.idmd.call("introspectToken", {"token": token})["active"]

    def login(self, svc, **kw):
        r = self.ok(svc, self.EMAIL, "auth", "open", "env", pw=[PASSWORD], **kw)
        self.assertTrue(self.active(r.env["IDM_REFRESH_TOKEN"]), r)
        return r

    def test_close_in_the_same_handle(self):
        svc = self.idm_service("kiosk", "export_tokens")
        other = self.login(svc)
        r = self.ok(svc, self.EMAIL, "auth", "open", "env", "close", pw=[PASSWORD])
        self.assertFalse(self.active(r.env["IDM_REFRESH_TOKEN"]), r)
        self.assertFalse(self.active(r.env["IDM_ACCESS_TOKEN"]), r)
        # Only that session: an earlier one is still live.
        self.assertTrue(self.active(other.env["IDM_REFRESH_TOKEN"]))

    def test_close_in_another_process(self):
        # sshd: authentication in a forked child, close_session in the monitor, which has no PAM
        # data of the child but imports its PAM environment. Two concurrent logins of one
        # customer: each logout ends its own session, whichever order they log out in.
        svc = self.idm_service("sshd", "export_tokens")
        first = self.login(svc)
        second = self.login(svc)
        self.assertNotEqual(first.env["IDM_SESSION_ID"], second.env["IDM_SESSION_ID"])
        self.ok(svc, self.EMAIL, "close", putenv=[f"IDM_SESSION_ID={first.env['IDM_SESSION_ID']}"])
        self.assertFalse(self.active(first.env["IDM_REFRESH_TOKEN"]))
        self.assertTrue(self.active(second.env["IDM_REFRESH_TOKEN"]))
        self.ok(svc, self.EMAIL, "close", putenv=[f"IDM_SESSION_ID={second.env['IDM_SESSION_ID']}"])
        self.assertFalse(self.active(second.env["IDM_REFRESH_TOKEN"]))

    def test_close_in_another_process_without_session_id(self):
        # An application that drops the PAM environment: idmd closes the session this uid opened
        # last for the customer (the fallback).
        svc = self.idm_service("sshd", "export_tokens")
        first = self.login(svc)
        second = self.login(svc)
        self.ok(svc, self.EMAIL, "close")
        self.assertFalse(self.active(second.env["IDM_REFRESH_TOKEN"]))
        self.assertTrue(self.active(first.env["IDM_REFRESH_TOKEN"]))
        # A malformed id is ignored (logged), and the fallback applies.
        third = self.login(svc)
        r = self.ok(svc, self.EMAIL, "close", putenv=["IDM_SESSION_ID=not a session id"])
        self.assertTrue(r.logged("malformed IDM_SESSION_ID in the PAM environment, ignoring"), r)
        self.assertFalse(self.active(third.env["IDM_REFRESH_TOKEN"]))
        self.assertTrue(self.active(first.env["IDM_REFRESH_TOKEN"]))

    def test_session_id_of_another_uid_is_not_closed(self):
        # idmd lets an unprivileged uid close only the session it opened itself.
        svc = self.idm_service("sshd", "export_tokens")
        r = self.login(svc)
        self.ok(svc, self.EMAIL, "close", putenv=[f"IDM_SESSION_ID={r.env['IDM_SESSION_ID']}"], as_nobody=True)
        self.assertTrue(self.active(r.env["IDM_REFRESH_TOKEN"]))

    def test_close_by_another_uid_leaves_the_session(self):
        svc = self.idm_service("sshd", "export_tokens")
        r = self.login(svc)
        self.ok(svc, self.EMAIL, "close", as_nobody=True)
        self.assertTrue(self.active(r.env["IDM_REFRESH_TOKEN"]))
        self.ok(svc, self.EMAIL, "close")
        self.assertFalse(self.active(r.env["IDM_REFRESH_TOKEN"]))

    def test_close_without_a_session(self):
        svc = self.idm_service("idm")
        self.ok(svc, self.EMAIL, "open", "close")
        self.ok(svc, "nobody@example.com", "close")
        self.ok(svc, "root", "open", "close")       # not a customer: nothing to do

    def test_env_export(self):
        svc = self.idm_service("kiosk", "export_env")
        r = self.ok(svc, self.EMAIL, "auth", "open", "env", pw=[PASSWORD])
        self.assertEqual({k: v for k, v in r.env.items() if k.startswith("IDM_")},
                         {"IDM_CUSTOMER_ID": self.customer["customerId"], "IDM_PUBLISHER_ID": self.publisher,
                          "IDM_SESSION_ID": r.env.get("IDM_SESSION_ID")})
        self.assertTrue(r.env["IDM_SESSION_ID"], r)
        # Nothing exported by a failed authentication.
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", "env", pw=["Wrong-passw0rd"])
        self.assertFalse([k for k in r.env if k.startswith("IDM_")], r)

    def test_kiosk_example(self):
        # The C example of docs/pam_idm.md: sign in, read IDM_CUSTOMER_ID, close the session.
        self.idmd.call("setPublisherConsents", {"publisherId": self.publisher, "consents": [
            {"name": "terms", "label": "Terms", "required": True}]})
        svc = self.idm_service("kiosk", "export_env")
        with pam_wrapper_lock():
            p = subprocess.run([KIOSK_EXAMPLE, svc, self.EMAIL], input=f"{PASSWORD}\ny\n", capture_output=True,
                               text=True, env=pam_env(self.svcdir, debuglevel=0), timeout=60)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout, "Password: Accept the updated Terms (version 1)? [y/N] "
                                   f"signed in: customer {self.customer['customerId']} of publisher {self.publisher}\n")
        with pam_wrapper_lock():
            p = subprocess.run([KIOSK_EXAMPLE, svc, self.EMAIL], input="Wrong-passw0rd\n", capture_output=True,
                               text=True, env=pam_env(self.svcdir, debuglevel=0), timeout=60)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("sign-in failed: Authentication failure", p.stderr)


if __name__ == "__main__":
    main()
