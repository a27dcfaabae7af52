# SPDX-License-Identifier: MIT
"""pam_sm_chauthtok through a real idmd, the way passwd(1) drives it: the current password
verified in PAM_PRELIM_CHECK, the new one set in PAM_UPDATE_AUTHTOK; a wrong current password,
policy refusals shown through PAM_ERROR_MSG, a mistyped confirmation, an unprivileged caller."""

from pamtest import PAM_SET_ITEMS, PASSWORD, PamTestCase, main

NEW = "N3w-password"


class TestChauthtok(PamTestCase):
    NEEDS = ("pamChangePassword", "pamAuthenticate")

    def test_change(self):
        svc = self.idm_service("passwd")
        r = self.ok(svc, self.EMAIL, "chauthtok", pw=[PASSWORD, NEW, NEW])
        self.assertEqual(r.prompts, [("prompt-off", "Current password: "), ("prompt-off", "New password: "),
                                     ("prompt-off", "Retype new password: ")], r)
        self.assertEqual(r.errors, [], r)
        self.assertTrue(r.logged(f"password changed for '{self.EMAIL}'"), r)
        self.ok(svc, self.EMAIL, "auth", pw=[NEW])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD])
        self.assertNotIn(NEW, self.idmd.log_text())

    def test_wrong_current_password(self):
        svc = self.idm_service("passwd")
        r = self.ok(svc, self.EMAIL, "chauthtok=PAM_AUTH_ERR", pw=["Wrong-passw0rd", NEW, NEW])
        # Refused in the preliminary check: no new password asked for.
        self.assertEqual(r.prompts, [("prompt-off", "Current password: ")], r)
        self.assertEqual(r.errors, ["The current password is not correct."], r)
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])

    def test_policy_refused(self):
        svc = self.idm_service("passwd")
        for new, why in (("short1", "short"), ("onlyletters", "digit"), ("x" * 81 + "1", "long")):
            r = self.ok(svc, self.EMAIL, "chauthtok=PAM_AUTHTOK_ERR", pw=[PASSWORD, new, new])
            self.assertEqual(len(r.prompts), 3, r)
            self.assertEqual(len(r.errors), 1, r)
            self.assertIn(why, r.errors[0], r)
            # Shown even under PAM_SILENT: the user must learn why.
            r = self.ok(svc, self.EMAIL, "chauthtok=PAM_AUTHTOK_ERR", pw=[PASSWORD, new, new], silent=True)
            self.assertEqual(len(r.errors), 1, r)
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])

    def test_confirmation_mismatch(self):
        svc = self.idm_service("passwd")
        r = self.ok(svc, self.EMAIL, "chauthtok=PAM_AUTHTOK_ERR", pw=[PASSWORD, NEW, NEW + "x"])
        self.assertTrue(any("do not match" in e for e in r.errors), r)
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])

    def test_unprivileged_caller(self):
        svc = self.idm_service("passwd")
        self.ok(svc, self.EMAIL, "chauthtok", pw=[PASSWORD, NEW, NEW], as_nobody=True)
        self.ok(svc, self.EMAIL, "auth", pw=[NEW], as_nobody=True)

    def test_unknown_user(self):
        svc = self.idm_service("passwd")
        self.ok(svc, "nobody@example.com", "chauthtok=PAM_AUTH_ERR", pw=[PASSWORD, NEW, NEW])

    def test_use_authtok_behind_a_quality_checker(self):
        # A module stacked before (pam_pwquality in real life) sets the new password; pam_idm
        # takes it with use_authtok and only asks for the current one.
        svc = self.service("passwd", f"password optional {PAM_SET_ITEMS}",
                           f"password required {self.idm('use_authtok')}",
                           f"auth required {self.idm()}")
        r = self.ok(svc, self.EMAIL, "chauthtok", env={"PAM_AUTHTOK": NEW, "PAM_OLDAUTHTOK": PASSWORD})
        self.assertEqual(r.prompts, [], r)
        self.ok(svc, self.EMAIL, "auth", pw=[NEW])


if __name__ == "__main__":
    main()
