#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Capture through the real socket: a publisher's settings (every standard key listed, custom
questions with options), bad settings of every kind refused with nothing changed, a customer's
status and answers (profile names, address parts, custom answers fitting their options), the
server-side validation of each answer field, 422 field_not_enabled storing nothing of the
request, login's shouldCaptureBeDisplayed (also for customers registered before a field became
required), the PAM methods, exportCustomer and deleteCustomer (read back with mdb_dump), and
another publisher reaching for the settings (403)."""

import datetime

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534

STANDARD = ["firstNameLastName", "birthDate", "companyName", "phoneNumber", "address"]
SETTINGS = [
    {"key": "firstNameLastName", "enabled": True, "required": False},
    {"key": "birthDate", "enabled": True, "required": True},
    {"key": "address", "enabled": True, "required": False},
    {"key": "custom_1", "enabled": True, "required": True, "question": "Favourite colour?",
     "value": "Red; Green ;Blue"},
    {"key": "custom_2", "enabled": True, "required": False, "question": "Anything else?"},
]


class Capture(IdmdTestCase):
    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub, self.token = p["publisherId"], p["publisherToken"]

    def settings(self, settings, token=None, **kw):
        return self.idmd.call("setCaptureSettings", dict({"publisherToken": token or self.token,
                                                          "settings": settings}, **kw))["settings"]

    def register(self, email="alice@example.com", **kw):
        return self.idmd.call("registerCustomer", dict({"email": email, "password": PASSWORD,
                                                        "publisherId": self.pub, "locale": "en_GB",
                                                        "country": "GB", "currency": "GBP"}, **kw))

    def login(self, email="alice@example.com"):
        return self.idmd.call("login", {"email": email, "password": PASSWORD, "publisherId": self.pub})

    def status(self, customer):
        return self.idmd.call("getCaptureStatus", {"jwt": customer["jwt"]})

    def answer(self, customer, **answers):
        return self.idmd.call("updateCaptureAnswers", dict({"jwt": customer["jwt"]}, **answers))

    def answer_error(self, customer, **answers):
        return self.idmd.error("updateCaptureAnswers", dict({"jwt": customer["jwt"]}, **answers))

    def by_key(self, status):
        return {s["key"]: s for s in status["settings"]}

    # --- settings ---

    def test_defaults_list_every_standard_key_disabled(self):
        got = self.idmd.call("getCaptureSettings", {"publisherToken": self.token})["settings"]
        self.assertEqual([s["key"] for s in got], STANDARD)
        self.assertFalse(any(s["enabled"] or s["required"] for s in got))
        st = self.status(self.register())
        self.assertFalse(st["isCaptureEnabled"])
        self.assertFalse(st["shouldCaptureBeDisplayed"])
        self.assertTrue(all(s["answer"] is None for s in st["settings"]))

    def test_set_settings_replaces_and_lists_all(self):
        got = self.settings(SETTINGS)
        self.assertEqual([s["key"] for s in got], STANDARD + ["custom_1", "custom_2"])
        keyed = {s["key"]: s for s in got}
        self.assertEqual(keyed["custom_1"], SETTINGS[3])
        self.assertEqual(keyed["custom_2"]["value"], "")
        self.assertEqual(keyed["companyName"], {"key": "companyName", "enabled": False, "required": False})
        self.assertEqual(self.idmd.call("getCaptureSettings", {"publisherToken": self.token})["settings"], got)
        self.assertRegex(self.idmd.log_text(), f"publisher {self.pub} set its capture settings")
        # Set again without custom_2 and with birthDate off: the whole list is replaced.
        got = self.settings([{"key": "birthDate", "enabled": False}])
        self.assertEqual([s["key"] for s in got], STANDARD)
        self.assertFalse(any(s["enabled"] for s in got))

    def test_bad_settings_change_nothing(self):
        self.settings(SETTINGS)
        before = self.idmd.call("getCaptureSettings", {"publisherToken": self.token})
        customs = [{"key": f"custom_{n}", "enabled": True, "question": "Q?"} for n in range(1, 22)]
        cases = [
            ([{"key": "shoeSize", "enabled": True}], 400, "invalid_value"),
            ([{"key": "custom_0", "enabled": True, "question": "Q?"}], 400, "invalid_value"),
            ([{"key": "custom_01", "enabled": True, "question": "Q?"}], 400, "invalid_value"),
            ([{"key": "birthDate", "enabled": True}, {"key": "birthDate", "enabled": False}], 400, "invalid_value"),
            ([{"key": "birthDate", "enabled": False, "required": True}], 400, "invalid_value"),
            ([{"key": "birthDate", "enabled": True, "question": "When?"}], 400, "invalid_value"),
            ([{"key": "custom_1", "enabled": True}], 400, "invalid_value"),
            ([{"key": "custom_1", "enabled": True, "question": ""}], 400, "invalid_value"),
            ([{"key": "custom_1", "enabled": True, "question": "Q?", "value": "a;;b"}], 400, "invalid_value"),
            ([{"key": "custom_1", "enabled": True, "question": "Q?", "value": "a;" + "b" * 300}], 400, "invalid_value"),
            ([{"key": "custom_1", "enabled": True, "question": "bell\u0007"}], 400, "invalid_value"),
            (customs, 400, "invalid_value"),
            ([{"key": "birthDate", "enabled": "yes"}], -32602, "invalid_params"),
            ([{"key": "birthDate"}], -32602, "invalid_params"),
            ([{"key": "birthDate", "enabled": True, "colour": "red"}], -32602, "invalid_params"),
            (["birthDate"], -32602, "invalid_params"),
            ({"birthDate": True}, -32602, "invalid_params"),
        ]
        for settings, code, reason in cases:
            with self.subTest(settings=str(settings)[:80]):
                e = self.idmd.error("setCaptureSettings", {"publisherToken": self.token, "settings": settings})
                self.assertError(e, code, reason)
        self.assertEqual(self.idmd.call("getCaptureSettings", {"publisherToken": self.token}), before)

    def test_other_publisher_is_refused(self):
        self.settings(SETTINGS)
        other = self.create_publisher(name="Other")
        mine = {"publisherId": self.pub, "publisherToken": other["publisherToken"]}
        for method, params in [("setCaptureSettings", dict(mine, settings=[])),
                               ("getCaptureSettings", mine)]:
            with self.subTest(method=method):
                self.assertError(self.idmd.error(method, params), 403, "forbidden")
        # An unprivileged peer needs a token; naming a publisherId is not enough.
        self.idmd.open_to_others()
        r = self.idmd.call_as(NOBODY, [["getCaptureSettings", {"publisherId": self.pub}],
                                       ["setCaptureSettings", {"publisherId": self.pub, "settings": []}]])
        for reply in r:
            self.assertEqual(reply["error"]["code"], 403, reply)
        # The other publisher's own settings are its own: still every key disabled.
        theirs = self.idmd.call("getCaptureSettings", {"publisherToken": other["publisherToken"]})["settings"]
        self.assertFalse(any(s["enabled"] for s in theirs))
        self.assertEqual(len(self.idmd.call("getCaptureSettings", {"publisherToken": self.token})["settings"]), 7)

    # --- answers ---

    def test_answers_and_status(self):
        self.settings(SETTINGS)
        alice = self.register(firstName="Alice")
        st = self.status(alice)
        self.assertTrue(st["isCaptureEnabled"])
        self.assertTrue(st["shouldCaptureBeDisplayed"])
        self.assertEqual(self.by_key(st)["firstNameLastName"]["answer"], {"firstName": "Alice", "lastName": None})

        st = self.answer(alice, lastName="Liddell", birthDate="1990-02-28", address="1 Main St", city="Oxford",
                         postCode="OX1", country="GB", customAnswers=[{"questionId": "custom_1", "value": "Green",
                                                                        "question": "Favourite colour?"}])
        keyed = self.by_key(st)
        self.assertFalse(st["shouldCaptureBeDisplayed"])
        self.assertEqual(keyed["firstNameLastName"]["answer"], {"firstName": "Alice", "lastName": "Liddell"})
        self.assertEqual(keyed["birthDate"]["answer"], "1990-02-28")
        self.assertEqual(keyed["address"]["answer"], {"address": "1 Main St", "address2": None, "city": "Oxford",
                                                      "state": None, "postCode": "OX1", "country": "GB"})
        self.assertEqual(keyed["custom_1"]["answer"], "Green")
        self.assertIsNone(keyed["custom_2"]["answer"])
        self.assertEqual(self.status(alice), st)
        # The names are the profile's.
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": alice["jwt"]})["lastName"], "Liddell")
        self.assertRegex(self.idmd.log_text(), r"customer \S+ changed 7 capture answer\(s\) \(customer\)")

        # "" clears an answer: a required one is asked again.
        st = self.answer(alice, birthDate="")
        self.assertIsNone(self.by_key(st)["birthDate"]["answer"])
        self.assertTrue(st["shouldCaptureBeDisplayed"])

        # A publisher backend answers with the customerToken.
        st = self.idmd.call("updateCaptureAnswers", {"customerToken": alice["customerToken"],
                                                     "birthDate": "1990-03-01"})
        self.assertFalse(st["shouldCaptureBeDisplayed"])

    def test_answer_validation_stores_nothing(self):
        self.settings(SETTINGS)
        alice = self.register()
        self.answer(alice, birthDate="1990-01-01", country="GB")
        before = self.status(alice)
        tomorrow = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        custom = [{"questionId": "custom_1", "value": "Purple"}]
        cases = [
            ({"birthDate": tomorrow}, 400, "invalid_value", "birthDate"),
            ({"birthDate": today}, 400, "invalid_value", "birthDate"),
            ({"birthDate": "2023-02-29"}, 400, "invalid_value", "birthDate"),
            ({"birthDate": "1899-12-31"}, 400, "invalid_value", "birthDate"),
            ({"birthDate": "1990-1-01"}, 400, "invalid_value", "birthDate"),
            ({"birthDate": "01.01.1990"}, 400, "invalid_value", "birthDate"),
            ({"country": "XX"}, 400, "invalid_country", "country"),
            ({"country": "gb"}, 400, "invalid_country", "country"),
            ({"firstName": "Al\u0001ice"}, 400, "invalid_value", "firstName"),
            ({"city": "Ox\u009bford"}, 400, "invalid_value", "city"),
            ({"address": "x" * 201}, -32602, "invalid_params", None),
            ({"postCode": 12345}, -32602, "invalid_params", None),
            ({"customAnswers": custom}, 400, "invalid_value", "customAnswers"),
            ({"customAnswers": [{"questionId": "custom_1", "value": "green"}]}, 400, "invalid_value",
             "customAnswers"),
            ({"customAnswers": [{"questionId": "colour", "value": "Red"}]}, 400, "invalid_value", "customAnswers"),
            ({"customAnswers": [{"questionId": "custom_2", "value": "x" * 1025}]}, -32602, "invalid_params", None),
            ({"customAnswers": [{"questionId": "custom_2"}]}, -32602, "invalid_params", None),
            ({"customAnswers": [{"questionId": "custom_2", "value": "x", "extra": 1}]}, -32602, "invalid_params",
             None),
            ({"customAnswers": {"custom_2": "x"}}, -32602, "invalid_params", None),
            ({"shoeSize": "9"}, -32602, "invalid_params", None),
            # Not enabled: 422, and the valid answer in the same request is not stored either.
            ({"companyName": "ACME", "birthDate": "1980-05-05"}, 422, "field_not_enabled", "companyName"),
            ({"phoneNumber": "+44 20 7946 0958", "birthDate": "1980-05-05"}, 422, "field_not_enabled",
             "phoneNumber"),
            ({"customAnswers": [{"questionId": "custom_3", "value": "x"}], "birthDate": "1980-05-05"}, 422,
             "field_not_enabled", "customAnswers"),
        ]
        for answers, code, reason, field in cases:
            with self.subTest(answers=str(answers)[:60]):
                e = self.answer_error(alice, **answers)
                self.assertError(e, code, reason)
                if field:
                    self.assertEqual(e["data"]["field"], field)
        self.assertEqual(self.status(alice), before)

    def test_phone_and_company_when_enabled(self):
        self.settings([{"key": "phoneNumber", "enabled": True, "required": True},
                       {"key": "companyName", "enabled": True}])
        alice = self.register()
        for bad in ["12345", "+1 (555) 0100 0000 0000 1", "phone", "+44 20 7946 0958 ext. 1", "++4420794609"]:
            with self.subTest(phone=bad):
                self.assertError(self.answer_error(alice, phoneNumber=bad), 400, "invalid_value")
        st = self.answer(alice, phoneNumber="+44 (20) 7946-0958", companyName="ACME Ltd")
        self.assertFalse(st["shouldCaptureBeDisplayed"])
        self.assertEqual(self.by_key(st)["phoneNumber"]["answer"], "+44 (20) 7946-0958")

    def test_custom_answer_after_options_change(self):
        self.settings(SETTINGS)
        alice = self.register(firstName="A", lastName="B")
        self.answer(alice, birthDate="1990-01-01", customAnswers=[{"questionId": "custom_1", "value": "Blue"}])
        self.assertFalse(self.login()["shouldCaptureBeDisplayed"])
        # Blue is no longer an option: the required question is unanswered again.
        changed = [dict(s, value="Red;Green") if s["key"] == "custom_1" else s for s in SETTINGS]
        self.settings(changed)
        self.assertTrue(self.login()["shouldCaptureBeDisplayed"])

    # --- login and customers registered before a field became required ---

    def test_login_should_capture_be_displayed(self):
        bob = self.register("bob@example.com")
        self.assertFalse(self.login("bob@example.com")["shouldCaptureBeDisplayed"])
        self.settings([{"key": "companyName", "enabled": True, "required": False}])
        self.assertFalse(self.login("bob@example.com")["shouldCaptureBeDisplayed"])
        # Made required after Bob registered: he is asked.
        self.settings([{"key": "companyName", "enabled": True, "required": True}])
        self.assertTrue(self.login("bob@example.com")["shouldCaptureBeDisplayed"])
        self.answer(bob, companyName="Bob's Bikes")
        self.assertFalse(self.login("bob@example.com")["shouldCaptureBeDisplayed"])

    # --- the PAM path ---

    def test_pam_account_and_answers(self):
        self.settings(SETTINGS)
        self.register()
        account = self.idmd.call("pamAccount", {"publisherId": self.pub, "user": "alice@example.com"})
        self.assertTrue(account["captureRequired"])
        self.assertEqual(account["capture"], [
            {"key": "birthDate", "enabled": True, "required": True, "fields": ["birthDate"]},
            {"key": "custom_1", "enabled": True, "required": True, "question": "Favourite colour?",
             "value": "Red; Green ;Blue", "fields": ["custom_1"]}])
        e = self.idmd.error("pamCaptureAnswers", {"publisherId": self.pub, "user": "alice@example.com",
                                                  "answers": {"birthDate": "3000-01-01"}})
        self.assertError(e, 400, "invalid_value")
        self.assertEqual(self.idmd.call("pamCaptureAnswers", {
            "publisherId": self.pub, "user": "alice@example.com",
            "answers": {"birthDate": "2000-01-01", "customAnswers": [{"questionId": "custom_1", "value": "Red"}]}}),
            {})
        account = self.idmd.call("pamAccount", {"publisherId": self.pub, "user": "alice@example.com"})
        self.assertFalse(account["captureRequired"])
        self.assertEqual(account["capture"], [])
        self.assertRegex(self.idmd.log_text(), r"changed 2 capture answer\(s\) \(pam\)")
        # An unprivileged peer that did not authenticate alice may not answer for her.
        self.idmd.open_to_others()
        r = self.idmd.call_as(NOBODY, [["pamCaptureAnswers", {"publisherId": self.pub, "user": "alice@example.com",
                                                               "answers": {"birthDate": "2001-01-01"}}]])
        self.assertIn("error", r[0])

    # --- export and delete ---

    def test_export_and_delete(self):
        self.settings(SETTINGS)
        alice = self.register()
        self.answer(alice, birthDate="1990-01-01", city="Oxford",
                    customAnswers=[{"questionId": "custom_2", "value": "Hello"}])
        doc = self.idmd.call("exportCustomer", {"publisherToken": self.token, "email": "alice@example.com"})
        self.assertEqual(doc["captureAnswers"], {"birthDate": "1990-01-01", "city": "Oxford", "custom_2": "Hello"})
        capture = self.idmd.table("capture")
        self.assertIn(f"customer:{alice['customerId']}", capture)
        self.assertIn(f"publisher:{self.pub}", capture)
        self.idmd.call("deleteCustomer", {"publisherToken": self.token, "email": "alice@example.com"})
        capture = self.idmd.table("capture")
        self.assertNotIn(f"customer:{alice['customerId']}", capture)
        self.assertIn(f"publisher:{self.pub}", capture)


if __name__ == "__main__":
    main()
