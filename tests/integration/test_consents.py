#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Consents through the real socket: a publisher's definitions and their idmd-kept versions
(new at 1, a changed label or value bumps, a given version that does not match is 409
version_mismatch, a removed and re-added consent continues its versions), registration refused
without the required consents (422 terms_not_accepted) and accepted with them, a customer's
answers with needsUpdate after a new version and the history kept in the store, login's
consentsUpdateRequired, another publisher's token, and bad input of every kind changing
nothing."""

import json
import subprocess

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534

TERMS = {"name": "terms", "label": "I accept the Terms of Service", "required": True}
NEWS = {"name": "news", "label": "Send me the newsletter", "required": False, "enabledByDefault": True,
        "value": "https://example.com/newsletter"}


class Consents(IdmdTestCase):
    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub, self.token = p["publisherId"], p["publisherToken"]

    # --- helpers ---

    def set_consents(self, consents, token=None, **kw):
        params = {"publisherToken": token or self.token, "consents": consents}
        params.update(kw)
        return self.idmd.call("setPublisherConsents", params)["consents"]

    def get_consents(self, pub=None):
        return self.idmd.call("getPublisherConsents", {"publisherId": pub or self.pub})["consents"]

    def by_name(self, consents):
        return {c["name"]: c for c in consents}

    def register(self, email="alice@example.com", consents=None, pub=None):
        params = {"email": email, "password": PASSWORD, "publisherId": pub or self.pub, "locale": "en_GB",
                  "country": "GB", "currency": "GBP"}
        if consents is not None:
            params["consents"] = consents
        return self.idmd.call("registerCustomer", params)

    def login(self, email="alice@example.com", pub=None):
        return self.idmd.call("login", {"email": email, "password": PASSWORD, "publisherId": pub or self.pub})

    def entries(self, table):
        return self.idmd.call("getStats")["store"]["entries"][table]

    # --- publisher definitions ---

    def test_definitions_and_versions(self):
        self.assertEqual(self.get_consents(), [])
        got = self.set_consents([TERMS, NEWS])
        self.assertEqual(got, [
            {"name": "terms", "label": TERMS["label"], "version": 1, "required": True, "enabledByDefault": False,
             "value": None},
            {"name": "news", "label": NEWS["label"], "version": 1, "required": False, "enabledByDefault": True,
             "value": NEWS["value"]},
        ])
        self.assertEqual(self.get_consents(), got)

        # the same again: no new version; required/enabledByDefault alone do not make one either
        self.assertEqual(self.set_consents([TERMS, NEWS]), got)
        c = self.by_name(self.set_consents([TERMS, dict(NEWS, enabledByDefault=False)]))
        self.assertEqual((c["terms"]["version"], c["news"]["version"]), (1, 1))

        # a changed label or value bumps the version
        c = self.by_name(self.set_consents([dict(TERMS, label="Terms, second edition"), NEWS]))
        self.assertEqual((c["terms"]["version"], c["news"]["version"]), (2, 1))
        c = self.by_name(self.set_consents([dict(TERMS, label="Terms, second edition"),
                                            dict(NEWS, value="https://example.com/n2")]))
        self.assertEqual((c["terms"]["version"], c["news"]["version"]), (2, 2))

        # a given version must be the one the consent will have
        t2 = dict(TERMS, label="Terms, second edition")
        self.assertEqual(self.by_name(self.set_consents([dict(t2, version=2)]))["terms"]["version"], 2)
        before = self.get_consents()
        e = self.idmd.error("setPublisherConsents", {"publisherToken": self.token,
                                                     "consents": [dict(TERMS, label="Third", version=2)]})
        self.assertError(e, 409, "version_mismatch")
        self.assertEqual((e["data"]["name"], e["data"]["expectedVersion"], e["data"]["currentVersion"]),
                         ("terms", 3, 2))
        e = self.idmd.error("setPublisherConsents", {"publisherToken": self.token,
                                                     "consents": [dict(t2, version=7)]})
        self.assertError(e, 409, "version_mismatch")
        e = self.idmd.error("setPublisherConsents", {"publisherToken": self.token,
                                                     "consents": [dict(t2, version=2),
                                                                  {"name": "new", "label": "New",
                                                                   "required": False, "version": 4}]})
        self.assertError(e, 409, "version_mismatch")
        self.assertEqual(self.get_consents(), before)       # nothing of a refused call was written
        self.assertEqual(self.by_name(self.set_consents([dict(TERMS, label="Third", version=3)]))["terms"]["version"], 3)

        # removing = leaving out; a consent added again continues after its last version
        self.assertEqual([c["name"] for c in self.get_consents()], ["terms"])
        c = self.by_name(self.set_consents([dict(TERMS, label="Third"), NEWS]))
        self.assertEqual(c["news"]["version"], 3)
        self.assertEqual(self.set_consents([]), [])
        self.assertEqual(self.by_name(self.set_consents([TERMS]))["terms"]["version"], 4)

    def test_get_by_offer_and_errors(self):
        self.set_consents([TERMS])
        self.idmd.call("addOffer", {"publisherToken": self.token, "offerId": "S_MONTHLY"})
        self.assertEqual(self.idmd.call("getPublisherConsents", {"offerId": "S_MONTHLY"})["consents"][0]["name"],
                         "terms")
        self.assertError(self.idmd.error("getPublisherConsents", {"publisherId": "999999999"}), 404, "not_found")
        self.assertError(self.idmd.error("getPublisherConsents", {}), -32602)
        self.assertError(self.idmd.error("getPublisherConsents", {"publisherId": self.pub, "x": 1}), -32602)
        # anyone may read them
        r = self.idmd.call_as(NOBODY, [["getPublisherConsents", {"publisherId": self.pub}]])
        self.assertEqual(r[0]["result"]["consents"][0]["name"], "terms")

    def test_get_by_publisher_token(self):
        """A publisherToken names its own publisher; it is checked like any publisher's."""
        other = self.create_publisher(name="Other")
        self.set_consents([TERMS])
        self.set_consents([NEWS], token=other["publisherToken"])
        self.idmd.call("addOffer", {"publisherToken": self.token, "offerId": "S_MONTHLY"})
        r = self.idmd.call_as(NOBODY, [
            ["getPublisherConsents", {"publisherToken": self.token}],
            ["getPublisherConsents", {"publisherToken": self.token, "publisherId": self.pub}],
            ["getPublisherConsents", {"publisherToken": self.token, "offerId": "S_MONTHLY"}],
            ["getPublisherConsents", {"publisherToken": other["publisherToken"]}],
            ["getPublisherConsents", {"publisherToken": other["publisherToken"], "publisherId": self.pub}],
            ["getPublisherConsents", {"publisherToken": other["publisherToken"], "offerId": "S_MONTHLY"}],
            ["getPublisherConsents", {"publisherToken": "nope" * 12}],
        ])
        for i in range(3):
            self.assertEqual([c["name"] for c in r[i]["result"]["consents"]], ["terms"], r[i])
        self.assertEqual([c["name"] for c in r[3]["result"]["consents"]], ["news"])
        self.assertError(r[4]["error"], 403, "forbidden")
        self.assertError(r[5]["error"], 400, "invalid_value")      # not one of its offers
        self.assertError(r[6]["error"], 401, "invalid_token")

    def test_value_null_is_no_value(self):
        """What getPublisherConsents returns (value null, version) is accepted back unchanged."""
        self.set_consents([TERMS, NEWS])
        shown = self.get_consents()
        self.assertIsNone(self.by_name(shown)["terms"]["value"])
        self.assertEqual(self.set_consents(shown), shown)
        self.assertEqual(self.get_consents(), shown)
        c = self.by_name(self.set_consents([dict(NEWS, value=None)]))
        self.assertIsNone(c["news"]["value"])
        self.assertEqual(c["news"]["version"], 2)       # the value went: a new version

    def test_only_the_publisher_sets_them(self):
        other = self.create_publisher(name="Other")
        self.set_consents([TERMS])
        before = self.get_consents()
        # another publisher's token cannot name this publisher
        self.assertError(self.idmd.error("setPublisherConsents", {"publisherToken": other["publisherToken"],
                                                                  "publisherId": self.pub, "consents": []}),
                         403, "forbidden")
        self.assertError(self.idmd.error("setPublisherConsents", {"publisherToken": "nope" * 10,
                                                                  "consents": []}), 401, "invalid_token")
        # its own token sets its own consents only
        self.set_consents([NEWS], token=other["publisherToken"])
        self.assertEqual(self.get_consents(), before)
        self.assertEqual([c["name"] for c in self.get_consents(other["publisherId"])], ["news"])
        # an unprivileged peer without a token: 403; with the token: allowed
        r = self.idmd.call_as(NOBODY, [
            ["setPublisherConsents", {"publisherId": self.pub, "consents": []}],
            ["setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS, NEWS]}]])
        self.assertError(r[0]["error"], 403, "forbidden")
        self.assertEqual(len(r[1]["result"]["consents"]), 2)
        # admin peers name the publisher
        self.assertEqual(self.idmd.call("setPublisherConsents", {"publisherId": self.pub, "consents": [TERMS]})
                         ["consents"][0]["version"], 1)
        self.assertError(self.idmd.error("setPublisherConsents", {"consents": [TERMS]}), -32602)

    def test_bad_definitions_change_nothing(self):
        self.set_consents([TERMS, NEWS])
        before = self.get_consents()
        n = self.entries("consents")
        bad = [
            ("not-a-list", -32602),
            ([42], -32602),
            ([{"label": "x", "required": True}], -32602),
            ([{"name": "x", "required": True}], -32602),
            ([{"name": "x", "label": "x"}], -32602),
            ([{"name": "x", "label": "x", "required": "yes"}], -32602),
            ([{"name": "x", "label": "x", "required": True, "enabledByDefault": 1}], -32602),
            ([{"name": "x", "label": "x", "required": True, "value": 5}], -32602),
            ([{"name": "x", "label": "x", "required": True, "version": "1"}], -32602),
            ([{"name": "x", "label": "x", "required": True, "color": "red"}], -32602),
            ([{"name": "", "label": "x", "required": True}], 400),
            ([{"name": "x" * 65, "label": "x", "required": True}], 400),
            ([{"name": "a\nb", "label": "x", "required": True}], 400),
            ([{"name": "x", "label": "", "required": True}], 400),
            ([{"name": "x", "label": "y" * 1025, "required": True}], 400),
            ([{"name": "x", "label": "x", "required": True, "value": "line\nbreak"}], 400),
            ([{"name": "x", "label": "x", "required": True, "value": "v" * 4097}], 400),
            ([{"name": "x", "label": "x", "required": True, "version": 0}], 400),
            ([TERMS, dict(TERMS, label="again")], 400),
            ([dict(TERMS, label="changed"), {"name": "x", "label": "x", "required": True, "version": "2"}], -32602),
            ([{"name": "c%d" % i, "label": "x", "required": False} for i in range(65)], -32602),
        ]
        for consents, code in bad:
            with self.subTest(consents=str(consents)[:80]):
                e = self.idmd.error("setPublisherConsents", {"publisherToken": self.token, "consents": consents})
                self.assertError(e, code)
                if code == 400:
                    self.assertEqual(e["data"]["reason"], "invalid_value")
        self.assertEqual(self.get_consents(), before)
        self.assertEqual(self.entries("consents"), n)

    # --- registration ---

    def test_registration_requires_consents(self):
        # a publisher without consents requires none
        self.register("first@example.com")
        self.set_consents([TERMS, NEWS])
        customers = self.entries("customers")
        consents = self.entries("consents")
        refused = [
            (None, 422, "terms_not_accepted"),
            ([], 422, "terms_not_accepted"),
            ([{"name": "terms", "version": 1, "state": "declined"}], 422, "terms_not_accepted"),
            ([{"name": "terms", "version": 2, "state": "accepted"}], 422, "terms_not_accepted"),
            ([{"name": "news", "version": 1, "state": "accepted"}], 422, "terms_not_accepted"),
            ([{"name": "terms", "version": 1, "state": "accepted"},
              {"name": "news", "version": 2, "state": "accepted"}], 409, "version_mismatch"),
            ([{"name": "terms", "version": 1, "state": "accepted"},
              {"name": "nope", "version": 1, "state": "accepted"}], 400, "invalid_value"),
            ([{"name": "terms", "version": 1, "state": "accepted"},
              {"name": "terms", "version": 1, "state": "accepted"}], 400, "invalid_value"),
            ([{"name": "terms", "version": 1, "state": "maybe"}], -32602, "invalid_params"),
            ([{"name": "terms", "version": 0, "state": "accepted"}], -32602, "invalid_params"),
            ([{"name": "terms", "version": "v1", "state": "accepted"}], -32602, "invalid_params"),
            ([{"name": "terms", "version": 1, "state": "accepted", "extra": 1}], -32602, "invalid_params"),
            (["terms"], -32602, "invalid_params"),
        ]
        for given, code, reason in refused:
            with self.subTest(consents=given):
                params = {"email": "bob@example.com", "password": PASSWORD, "publisherId": self.pub,
                          "locale": "en_GB", "country": "GB", "currency": "GBP"}
                if given is not None:
                    params["consents"] = given
                e = self.idmd.error("registerCustomer", params)
                self.assertError(e, code, reason)
                if reason == "terms_not_accepted":
                    self.assertEqual(e["data"]["missing"], ["terms"])
        self.assertEqual(self.entries("customers"), customers)
        self.assertEqual(self.entries("consents"), consents)

        # accepted, with the version as a string as some seed clients send it
        r = self.register("bob@example.com", [{"name": "terms", "version": "1", "state": "accepted"},
                                              {"name": "news", "version": 1, "state": "declined"}])
        mine = self.by_name(self.idmd.call("getCustomerConsents", {"jwt": r["jwt"]})["consents"])
        self.assertEqual(mine["terms"]["state"], "accepted")
        self.assertEqual(mine["terms"]["version"], 1)
        self.assertIs(mine["terms"]["needsUpdate"], False)
        self.assertRegex(mine["terms"]["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(mine["news"]["state"], "declined")
        self.assertIs(self.login("bob@example.com")["consentsUpdateRequired"], False)
        # the answers are kept apart from the customer record
        rec = self.idmd.table("customers")[r["customerId"]]
        self.assertNotIn("consents", rec)

    # --- a customer's answers ---

    def test_customer_consents_needs_update_and_login(self):
        self.set_consents([TERMS, NEWS])
        r = self.register(consents=[{"name": "terms", "version": 1, "state": "accepted"},
                                    {"name": "news", "version": 1, "state": "accepted"}])
        jwt = r["jwt"]
        self.assertIs(self.login()["consentsUpdateRequired"], False)
        mine = self.idmd.call("getCustomerConsents", {"jwt": jwt})["consents"]
        self.assertEqual(sorted(mine[0]), sorted(["name", "label", "required", "state", "version", "newestVersion",
                                                  "needsUpdate", "date"]))

        # a new version of a required consent concerns every customer
        self.set_consents([dict(TERMS, label="Terms v2"), NEWS])
        mine = self.by_name(self.idmd.call("getCustomerConsents", {"jwt": jwt})["consents"])
        self.assertEqual((mine["terms"]["version"], mine["terms"]["newestVersion"]), (1, 2))
        self.assertIs(mine["terms"]["needsUpdate"], True)
        self.assertEqual(mine["terms"]["label"], "Terms v2")
        self.assertIs(mine["news"]["needsUpdate"], False)
        self.assertIs(self.login()["consentsUpdateRequired"], True)

        # only the current version may be accepted
        e = self.idmd.error("updateCustomerConsents",
                            {"jwt": jwt, "consents": [{"name": "terms", "version": 1, "state": "accepted"}]})
        self.assertError(e, 409, "version_mismatch")
        self.assertEqual((e["data"]["name"], e["data"]["version"], e["data"]["newestVersion"]), ("terms", 1, 2))
        got = self.idmd.call("updateCustomerConsents",
                             {"jwt": jwt, "consents": [{"name": "terms", "version": 2, "state": "accepted"}]})
        terms = self.by_name(got["consents"])["terms"]
        self.assertEqual((terms["version"], terms["state"], terms["needsUpdate"]), (2, "accepted", False))
        self.assertIs(self.login()["consentsUpdateRequired"], False)

        # a new version of an optional one: needsUpdate for it, but login does not require it
        self.set_consents([dict(TERMS, label="Terms v2"), dict(NEWS, label="Weekly newsletter")])
        mine = self.by_name(self.idmd.call("getCustomerConsents", {"jwt": jwt})["consents"])
        self.assertIs(mine["news"]["needsUpdate"], True)
        self.assertIs(self.login()["consentsUpdateRequired"], False)
        self.idmd.call("updateCustomerConsents",
                       {"jwt": jwt, "consents": [{"name": "news", "version": 2, "state": "declined"}]})
        mine = self.by_name(self.idmd.call("getCustomerConsents", {"jwt": jwt})["consents"])
        self.assertEqual((mine["news"]["state"], mine["news"]["needsUpdate"]), ("declined", False))

        # withdrawing a required consent is allowed, and then login says so
        self.idmd.call("updateCustomerConsents",
                       {"jwt": jwt, "consents": [{"name": "terms", "version": 2, "state": "declined"}]})
        self.assertIs(self.login()["consentsUpdateRequired"], True)
        self.idmd.call("updateCustomerConsents",
                       {"jwt": jwt, "consents": [{"name": "terms", "version": 2, "state": "accepted"}]})
        # saying the same again is not a change
        self.idmd.call("updateCustomerConsents",
                       {"jwt": jwt, "consents": [{"name": "terms", "version": 2, "state": "accepted"}]})
        self.assertIs(self.login()["consentsUpdateRequired"], False)

        # a new required consent concerns everyone too
        self.set_consents([dict(TERMS, label="Terms v2"), dict(NEWS, label="Weekly newsletter"),
                           {"name": "privacy", "label": "Privacy policy", "required": True}])
        self.assertIs(self.login()["consentsUpdateRequired"], True)
        mine = self.by_name(self.idmd.call("getCustomerConsents", {"jwt": jwt})["consents"])
        self.assertEqual((mine["privacy"]["state"], mine["privacy"]["version"], mine["privacy"]["date"],
                          mine["privacy"]["needsUpdate"]), (None, None, None, True))

        # the history of changes is kept in the store
        rec = self.idmd.table("consents")["customer:" + r["customerId"]]
        self.assertEqual([(h["name"], h["version"], h["state"], h["source"]) for h in rec["history"]], [
            ("terms", 1, "accepted", "registration"),
            ("news", 1, "accepted", "registration"),
            ("terms", 2, "accepted", "customer"),
            ("news", 2, "declined", "customer"),
            ("terms", 2, "declined", "customer"),
            ("terms", 2, "accepted", "customer"),
        ])
        self.assertEqual(rec["consents"]["terms"]["version"], 2)
        self.assertEqual(rec["publisherId"], self.pub)

    def test_bad_answers_change_nothing(self):
        self.set_consents([TERMS, NEWS])
        r = self.register(consents=[{"name": "terms", "version": 1, "state": "accepted"}])
        jwt = r["jwt"]
        before = self.idmd.call("getCustomerConsents", {"jwt": jwt})
        n = self.entries("consents")
        ok = {"name": "news", "version": 1, "state": "accepted"}
        bad = [
            ({"jwt": "not.a.jwt", "consents": [ok]}, 401, "invalid_token"),
            ({"consents": [ok]}, -32602, None),
            ({"jwt": jwt}, -32602, None),
            ({"jwt": jwt, "consents": {"name": "news"}}, -32602, None),
            ({"jwt": jwt, "consents": [ok], "extra": 1}, -32602, None),
            ({"jwt": jwt, "consents": [ok, {"name": "news", "version": 1}]}, -32602, "invalid_params"),
            ({"jwt": jwt, "consents": [ok, {"name": "news", "version": 1, "state": "yes"}]}, -32602, None),
            ({"jwt": jwt, "consents": [ok, {"name": "news", "version": -1, "state": "accepted"}]}, -32602, None),
            ({"jwt": jwt, "consents": [ok, {"name": 7, "version": 1, "state": "accepted"}]}, -32602, None),
            ({"jwt": jwt, "consents": [ok, {"name": "other", "version": 1, "state": "accepted"}]}, 400,
             "invalid_value"),
            ({"jwt": jwt, "consents": [ok, ok]}, 400, "invalid_value"),
            ({"jwt": jwt, "consents": [ok, {"name": "terms", "version": 2, "state": "accepted"}]}, 409,
             "version_mismatch"),
            ({"jwt": jwt, "consents": [ok] * 65}, -32602, None),
        ]
        for params, code, reason in bad:
            with self.subTest(params=str(params)[:100]):
                self.assertError(self.idmd.error("updateCustomerConsents", params), code, reason)
        self.assertEqual(self.idmd.call("getCustomerConsents", {"jwt": jwt}), before)
        self.assertEqual(self.entries("consents"), n)
        # a publisher token is not a customer credential
        self.assertError(self.idmd.error("getCustomerConsents", {"jwt": self.token}), 401, "invalid_token")

    def test_customers_are_apart(self):
        other = self.create_publisher(name="Other")
        self.set_consents([TERMS])
        self.set_consents([NEWS], token=other["publisherToken"])
        a = self.register(consents=[{"name": "terms", "version": 1, "state": "accepted"}])
        b = self.register(pub=other["publisherId"])
        self.assertEqual([c["name"] for c in self.idmd.call("getCustomerConsents", {"jwt": b["jwt"]})["consents"]],
                         ["news"])
        # b answers its own publisher's consents; a's are untouched
        self.assertError(self.idmd.error("updateCustomerConsents", {
            "jwt": b["jwt"], "consents": [{"name": "terms", "version": 1, "state": "declined"}]}), 400, "invalid_value")
        self.idmd.call("updateCustomerConsents",
                       {"jwt": b["jwt"], "consents": [{"name": "news", "version": 1, "state": "accepted"}]})
        mine = self.idmd.call("getCustomerConsents", {"jwt": a["jwt"]})["consents"]
        self.assertEqual((mine[0]["name"], mine[0]["state"]), ("terms", "accepted"))
        # a revoked session's jwt no longer works
        self.idmd.call("logoutAll", {"jwt": a["jwt"]})
        self.assertError(self.idmd.error("getCustomerConsents", {"jwt": a["jwt"]}), 401, "invalid_token")


if __name__ == "__main__":
    main()
