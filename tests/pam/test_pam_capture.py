# SPDX-License-Identifier: MIT
"""pam_sm_acct_mgmt's capture step through a real idmd and the real libpam: capture=prompt asks
each missing required field in the conversation (a custom question with its options), records the
answers (read back through getCaptureStatus), asks again after a refused answer and gives up after
three rounds naming what is missing; capture=deny refuses with a message naming the missing
fields; capture=ignore lets the customer through; nothing is asked when nothing is missing."""

from pamtest import PASSWORD, PamTestCase, main

SETTINGS = [
    {"key": "birthDate", "enabled": True, "required": True},
    {"key": "custom_1", "enabled": True, "required": True, "question": "Favourite genre?", "value": "Drama;Sport"},
    {"key": "companyName", "enabled": True, "required": False},
]
PROMPTS = [("prompt-on", "Date of birth (YYYY-MM-DD): "), ("prompt-on", "Favourite genre? (one of: Drama;Sport): ")]


class TestCapture(PamTestCase):
    NEEDS = ("pamAccount", "pamCaptureAnswers", "setCaptureSettings")

    def setUp(self):
        super().setUp()
        self.idmd.call("setCaptureSettings", {"publisherId": self.publisher, "settings": SETTINGS})

    def status(self):
        login = self.idmd.call("login", {"email": self.EMAIL, "password": PASSWORD, "publisherId": self.publisher})
        return {s["key"]: s["answer"] for s in self.idmd.call("getCaptureStatus", {"jwt": login["jwt"]})["settings"]}

    def test_prompt_records_answers(self):
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "acct", echo=[" 1990-04-12 ", "Sport"])
        self.assertEqual(r.prompts, PROMPTS, r)
        self.assertEqual(r.infos, ["Please complete your profile."], r)
        got = self.status()
        self.assertEqual((got["birthDate"], got["custom_1"]), ("1990-04-12", "Sport"))
        # Complete now: nothing asked.
        r = self.ok(svc, self.EMAIL, "acct")
        self.assertEqual(r.prompts, [], r)

    def test_prompt_again_after_a_refused_answer(self):
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "acct", echo=["2999-01-01", "Sport", "1990-04-12", "Drama"])
        self.assertEqual(r.prompts, PROMPTS + PROMPTS, r)
        self.assertEqual(len(r.errors), 1, r)
        self.assertIn("birthDate", r.errors[0])
        self.assertEqual(self.status()["custom_1"], "Drama")

    def test_prompt_gives_up(self):
        svc = self.idm_service("idm")
        # Empty answers three times: denied, naming what is missing; nothing stored.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED", echo=[""] * 6)
        self.assertEqual(len(r.prompts), 6, r)
        self.assertEqual(r.errors[-1], "Your profile must be completed before you can log in: birthDate, "
                                       "Favourite genre?.", r)
        self.assertTrue(r.logged(f"profile questions left unanswered by '{self.EMAIL}'"), r)
        self.assertIsNone(self.status()["birthDate"])
        # A conversation that cannot ask: denied.
        r = self.ok(svc, self.EMAIL, "acct=PAM_PERM_DENIED")
        self.assertTrue(r.logged("cannot ask for the profile"), r)

    def test_deny_and_ignore(self):
        r = self.ok(self.idm_service("deny", "capture=deny"), self.EMAIL, "acct=PAM_PERM_DENIED", echo=["x"])
        self.assertEqual(r.prompts, [], r)
        self.assertEqual(r.errors, ["Your profile must be completed before you can log in: birthDate, "
                                    "Favourite genre?."], r)
        r = self.ok(self.idm_service("ignore", "capture=ignore"), self.EMAIL, "acct", echo=["x"])
        self.assertEqual(r.prompts, [], r)
        # Not required any more: nothing to ask under any policy.
        self.idmd.call("setCaptureSettings", {"publisherId": self.publisher, "settings": [
            {"key": "birthDate", "enabled": True}]})
        r = self.ok(self.idm_service("deny2", "capture=deny"), self.EMAIL, "acct")
        self.assertEqual((r.prompts, r.errors), ([], []), r)

    def test_full_login(self):
        svc = self.idm_service("login")
        r = self.ok(svc, self.EMAIL, "auth", "acct", "open", "close", pw=[PASSWORD], echo=["1990-04-12", "Drama"])
        self.assertEqual([p[0] for p in r.prompts], ["prompt-off", "prompt-on", "prompt-on"], r)


if __name__ == "__main__":
    main()
