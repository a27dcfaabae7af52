#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Publishers and offers through the real socket: creation, tokens shown once and stored
hashed, rotation, allow-list validation, offers scoped to their publisher, and that refused
requests change nothing."""

import os
import re
import subprocess

from idmtest import IdmdTestCase, main


class Publishers(IdmdTestCase):
    def test_create_and_list(self):
        p = self.create_publisher(name="Acme TV", resetUrl="https://acme.example/reset",
                                  ssoUrl="https://acme.example/sso", ssoPages={"account": "/my-account"})
        self.assertRegex(p["publisherId"], r"^[1-9][0-9]{8}$")
        self.assertRegex(p["publisherToken"], r"^[A-Za-z0-9_-]{48}$")
        items = self.idmd.call("listPublishers")["items"]
        self.assertEqual(len(items), 1)
        pub = items[0]
        self.assertEqual(pub["publisherId"], p["publisherId"])
        self.assertEqual(pub["name"], "Acme TV")
        self.assertEqual(pub["allowedRedirectUris"], ["https://app.example.com/cb"])
        self.assertEqual(pub["ssoPages"], {"account": "/my-account"})
        self.assertNotIn("tokenHash", pub)
        self.assertRegex(pub["createdDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertNotIn("publisherToken", pub)
        self.assertEqual(self.idmd.call("getPublisher", {"publisherId": p["publisherId"]})["name"], "Acme TV")

    def test_token_is_stored_hashed(self):
        p = self.create_publisher()
        self.idmd.stop()
        data = self.idmd.stored_bytes()
        self.assertNotIn(p["publisherToken"].encode(), data)

    def test_uri_validation(self):
        for bad in [["http://example.com/cb"], ["ftp://x.example/"], ["/relative"], ["https://"],
                    ["https://a.example/#frag"], [5], ["https://user@a.example/"]]:
            err = self.idmd.error("createPublisher", {"name": "X", "allowedRedirectUris": bad})
            self.assertIn(err["code"], (400, -32602), bad)
        for ok in [["http://localhost:8080/cb"], ["http://127.0.0.1/cb"], ["https://app.example.com/cb?x=1"]]:
            self.idmd.call("createPublisher", {"name": "X", "allowedRedirectUris": ok})
        err = self.idmd.error("createPublisher", {"name": "X", "resetUrl": "http://evil.example/"})
        self.assertError(err, 400, "invalid_uri")
        self.assertEqual(err["data"]["field"], "resetUrl")
        err = self.idmd.error("createPublisher", {"name": ""})
        self.assertError(err, 400, "invalid_value")
        err = self.idmd.error("createPublisher", {"name": "X", "ssoPages": {"a": "no-slash"}})
        self.assertError(err, 400, "invalid_value")
        self.assertEqual(len(self.idmd.call("listPublishers")["items"]), 3)

    def test_update(self):
        p = self.create_publisher()
        pid = p["publisherId"]
        pub = self.idmd.call("updatePublisher", {"publisherId": pid, "name": "Renamed",
                                                 "allowedRedirectUris": ["https://new.example/cb"]})
        self.assertEqual(pub["name"], "Renamed")
        self.assertEqual(pub["allowedRedirectUris"], ["https://new.example/cb"])
        err = self.idmd.error("updatePublisher", {"publisherId": pid, "allowedRedirectUris": ["http://x.example/"]})
        self.assertError(err, 400, "invalid_uri")
        self.assertEqual(self.idmd.call("getPublisher", {"publisherId": pid})["allowedRedirectUris"],
                         ["https://new.example/cb"])
        self.assertError(self.idmd.error("updatePublisher", {"publisherId": "999999999", "name": "x"}),
                         404, "not_found")

    def test_rotate_token(self):
        p = self.create_publisher()
        old = p["publisherToken"]
        self.idmd.call("addOffer", {"publisherToken": old, "offerId": "S1_US"})
        new = self.idmd.call("rotatePublisherToken", {"publisherId": p["publisherId"]})["publisherToken"]
        self.assertNotEqual(old, new)
        self.assertError(self.idmd.error("listOffers", {"publisherToken": old}), 401, "invalid_token")
        self.assertEqual([o["offerId"] for o in self.idmd.call("listOffers", {"publisherToken": new})["items"]],
                         ["S1_US"])

    def test_offers(self):
        a = self.create_publisher(name="A")
        b = self.create_publisher(name="B")
        ta, tb = a["publisherToken"], b["publisherToken"]
        offer = self.idmd.call("addOffer", {"publisherToken": ta, "offerId": "R123123123_US", "title": "Monthly"})
        self.assertEqual(offer["publisherId"], a["publisherId"])
        self.assertRegex(offer["createdDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.idmd.call("addOffer", {"publisherId": b["publisherId"], "offerId": "B_1"})  # admin names the publisher
        self.assertError(self.idmd.error("addOffer", {"publisherToken": tb, "offerId": "R123123123_US"}),
                         409, "offer_exists")
        self.assertError(self.idmd.error("addOffer", {"publisherToken": ta, "offerId": "bad id!"}),
                         400, "invalid_value")
        self.assertError(self.idmd.error("addOffer", {"publisherToken": ta, "publisherId": b["publisherId"],
                                                      "offerId": "X"}), 403, "forbidden")
        self.assertError(self.idmd.error("addOffer", {"offerId": "X"}), -32602)  # admin must name one
        self.assertError(self.idmd.error("addOffer", {"publisherId": "123456789", "offerId": "X"}), 404)
        self.assertEqual([o["offerId"] for o in self.idmd.call("listOffers", {"publisherToken": ta})["items"]],
                         ["R123123123_US"])
        self.assertEqual([o["offerId"] for o in self.idmd.call("listOffers", {"publisherToken": tb})["items"]],
                         ["B_1"])
        # B cannot remove A's offer; it is "not found" to B
        self.assertError(self.idmd.error("removeOffer", {"publisherToken": tb, "offerId": "R123123123_US"}),
                         404, "not_found")
        self.idmd.call("removeOffer", {"publisherToken": ta, "offerId": "R123123123_US"})
        self.assertEqual(self.idmd.call("listOffers", {"publisherToken": ta})["items"], [])
        self.assertError(self.idmd.error("removeOffer", {"publisherToken": ta, "offerId": "R123123123_US"}), 404)

    def test_bad_publisher_token(self):
        self.create_publisher()
        for tok in ["", "x" * 48, "short"]:
            self.assertError(self.idmd.error("listOffers", {"publisherToken": tok}), 401, "invalid_token")


if __name__ == "__main__":
    main()
