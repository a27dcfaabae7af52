#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Customer administration by publishers (and admins): listCustomers pages through a publisher's
customers in e-mail order with a prefix query and a cursor that stays correct while customers
are added and deleted; a publisher sees, exports and deletes only its own customers."""

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"


class CustomerAdmin(IdmdTestCase):
    def setUp(self):
        super().setUp()
        a = self.create_publisher(name="A")
        b = self.create_publisher(name="B")
        self.a, self.a_token = a["publisherId"], a["publisherToken"]
        self.b, self.b_token = b["publisherId"], b["publisherToken"]

    def register(self, email, pub):
        return self.idmd.call("registerCustomer", {"email": email, "password": PASSWORD, "publisherId": pub,
                                                   "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def page(self, token, **params):
        return self.idmd.call("listCustomers", dict(params, publisherToken=token))

    def test_pages_in_email_order(self):
        emails = [f"user{i:02d}@example.com" for i in range(25)]
        for e in reversed(emails):
            self.register(e, self.a)
        self.register("other@example.com", self.b)

        seen, cursor = [], None
        while True:
            p = self.page(self.a_token, limit=10, **({"cursor": cursor} if cursor else {}))
            self.assertLessEqual(len(p["items"]), 10)
            seen += [c["email"] for c in p["items"]]
            cursor = p["cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, emails)
        for c in p["items"]:
            self.assertNotIn("passwordHash", c)

        # A prefix query, case-insensitive.
        p = self.page(self.a_token, query="USER1")
        self.assertEqual([c["email"] for c in p["items"]], emails[10:20])
        self.assertIsNone(p["cursor"])

    def test_cursor_survives_inserts_and_deletes(self):
        for e in ("b@example.com", "d@example.com", "f@example.com", "h@example.com"):
            self.register(e, self.a)
        p = self.page(self.a_token, limit=2)
        self.assertEqual([c["email"] for c in p["items"]], ["b@example.com", "d@example.com"])
        # Meanwhile: one already shown goes, one before the cursor and one after it come.
        self.idmd.call("deleteCustomer", {"publisherToken": self.a_token, "email": "b@example.com"})
        self.register("a@example.com", self.a)
        self.register("e@example.com", self.a)
        p = self.page(self.a_token, limit=10, cursor=p["cursor"])
        self.assertEqual([c["email"] for c in p["items"]], ["e@example.com", "f@example.com", "h@example.com"])

    def test_get_customer_by_name(self):
        alice = self.idmd.call("registerCustomer", {
            "email": "Alice@example.com", "password": PASSWORD, "publisherId": self.a, "locale": "en_GB",
            "country": "GB", "currency": "GBP", "externalId": "crm-7", "publisherToken": self.a_token})
        for naming in ({"customerId": alice["customerId"]}, {"email": "alice@EXAMPLE.com"}, {"externalId": "crm-7"}):
            with self.subTest(naming=naming):
                c = self.idmd.call("getCustomer", dict(naming, publisherToken=self.a_token))
                self.assertEqual(c["customerId"], alice["customerId"])
                self.assertNotIn("passwordHash", c)
                err = self.idmd.error("getCustomer", dict(naming, publisherToken=self.b_token))
                self.assertError(err, 404, "not_found")
        c = self.idmd.call("getCustomer", {"publisherId": self.a, "externalId": "crm-7"})   # admin
        self.assertEqual(c["customerId"], alice["customerId"])
        # A customer's own token names its customer; naming another with it is refused.
        err = self.idmd.error("getCustomer", {"jwt": alice["jwt"], "email": "bob@example.com"})
        self.assertError(err, -32602, "invalid_params")
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": alice["jwt"]})["customerId"], alice["customerId"])
        # Exactly one name.
        err = self.idmd.error("getCustomer", {"publisherToken": self.a_token})
        self.assertError(err, -32602, "invalid_params")

    def test_limits(self):
        for bad in (0, 1001):
            err = self.idmd.error("listCustomers", {"publisherToken": self.a_token, "limit": bad})
            self.assertError(err, -32602, "invalid_params")
            self.assertEqual(err["data"]["param"], "limit")

    def test_a_publisher_sees_only_its_own(self):
        alice = self.register("alice@example.com", self.a)
        self.register("bob@example.com", self.b)
        self.assertEqual([c["email"] for c in self.page(self.b_token)["items"]], ["bob@example.com"])
        for method in ("exportCustomer", "deleteCustomer", "getCustomer", "setCustomerDisabled", "getCustomerLockout",
                       "unlockCustomer"):
            for naming in ({"customerId": alice["customerId"]}, {"email": "alice@example.com"}):
                with self.subTest(method=method, naming=naming):
                    params = dict(naming, publisherToken=self.b_token)
                    if method == "setCustomerDisabled":
                        params["disabled"] = True
                    if method in ("getCustomerLockout", "unlockCustomer") and "email" in naming:
                        # Lockouts are kept per (publisher, e-mail), for any e-mail: B sees its
                        # own, empty, and nothing of A's account.
                        r = self.idmd.call(method, params)
                        self.assertIsNone(r.get("customerId"), r)
                        continue
                    self.assertError(self.idmd.error(method, params), 404, "not_found")
        # A's own publisher may disable (and enable) its customer.
        r = self.idmd.call("setCustomerDisabled", {"publisherToken": self.a_token, "email": "alice@example.com",
                                                   "disabled": True})
        self.assertEqual(r, {"customerId": alice["customerId"], "disabled": True})
        self.idmd.call("setCustomerDisabled", {"publisherToken": self.a_token, "customerId": alice["customerId"],
                                               "disabled": False})
        # A's customer is otherwise untouched; an admin names the publisher.
        items = self.idmd.call("listCustomers", {"publisherId": self.a})["items"]
        self.assertEqual([c["customerId"] for c in items], [alice["customerId"]])
        # Without credentials: refused.
        self.idmd.open_to_others()
        [reply] = self.idmd.call_as(65534, [("listCustomers", {"publisherId": self.a})])
        self.assertError(reply["error"], 403, "forbidden")


if __name__ == "__main__":
    main()
