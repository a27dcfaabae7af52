#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""One publisher reaching for another's data, table-driven: with publisher B's token (or the
sessionID publisherLogin gives for it), every method that reads or changes a publisher's
customers, capture settings, consents or offers is refused when it names publisher A (403
forbidden; 400 invalid_value where A is named by one of its offers), and naming one of A's
customers by id, e-mail or externalId finds nothing (404 not_found, the same answer as for a
customer that does not exist, so B learns nothing about A's customers). Afterwards everything of
A's is as it was. Every method idmd lists is either in the table or named as not
publisher-scoped, so a new method without a row fails this test."""

import itertools

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534

# Methods that take no publisher's data, or take it only through a customer's own credential
# (whose publisher is fixed by the token) or the PAM path (tested in test_pam_methods.py).
NOT_PUBLISHER_SCOPED = {
    "getServerInfo", "getStats", "backup", "createPublisher", "listPublishers", "rotatePublisherToken",
    "updatePublisher", "getPublisher", "rotateSigningKey", "testAdvanceClock",
    "registerCustomer", "login", "refreshToken", "revokeToken", "logoutAll", "introspectToken", "getJwks",
    "updateCustomer", "changePassword", "getCustomerConsents", "updateCustomerConsents",
    "getCaptureStatus", "updateCaptureAnswers", "getLocales",
    # anyone may ask for a reset mail; the token or code mailed is the credential of updatePassword
    "requestPasswordReset", "updatePassword",
    # a one-time token is its own credential
    "redeemToken",
    # device login: the device names the publisher it signs in to; approval is the customer's own
    # (its jwt fixes the publisher: another publisher's customer finds nothing, test_device.py) or an admin's
    "startDeviceLogin", "pollDeviceLogin", "approveDeviceLogin", "denyDeviceLogin",
    "pamAuthenticate", "pamAccount", "pamAcceptConsents", "pamCaptureAnswers", "pamChangePassword",
    "pamCloseSession",
    "listOutbox", "retryOutbox", "dropOutbox", "testQueueMail",
}

# (method, params besides the credential and the naming): the publisher-scoped methods.
PUBLISHER_METHODS = [
    ("listCustomers", {}),
    ("getCustomer", {"customerId": "{id}"}),
    ("exportCustomer", {"customerId": "{id}"}),
    ("deleteCustomer", {"customerId": "{id}"}),
    ("setCustomerDisabled", {"customerId": "{id}", "disabled": True}),
    ("setCustomerUnix", {"customerId": "{id}", "enabled": True}),
    ("unlockCustomer", {"email": "alice@example.com"}),
    ("getCustomerLockout", {"email": "alice@example.com"}),
    ("getCaptureSettings", {}),
    ("setCaptureSettings", {"settings": []}),
    ("getPublisherConsents", {}),
    ("setPublisherConsents", {"consents": []}),
    ("listOffers", {}),
    ("addOffer", {"offerId": "B_STEALS_1"}),
    ("removeOffer", {"offerId": "A_OFFER_1"}),
    ("publisherLogin", {}),
    ("prepareRemoteAuth", {"customerData": {"email": "mallory@example.com"},
                           "flowDescription": {"offerId": "A_OFFER_1", "redirectUri": "https://app.example.com/cb"}}),
    ("getSingleSignOnByCustomer", {"idCustomer": "{id}", "customerType": "CustomerReference"}),
    ("ssoLogin", {"email": "alice@example.com", "externalId": "crm-1"}),
]

# Methods naming one customer: B's token with A's customer (and no publisherId).
CUSTOMER_METHODS = ["getCustomer", "exportCustomer", "deleteCustomer", "setCustomerDisabled", "setCustomerUnix"]


class CrossPublisher(IdmdTestCase):
    def setUp(self):
        super().setUp()
        a = self.create_publisher(name="A")
        b = self.create_publisher(name="B")
        self.a, self.a_token = a["publisherId"], a["publisherToken"]
        self.b, self.b_token = b["publisherId"], b["publisherToken"]
        self.idmd.call("addOffer", {"publisherToken": self.a_token, "offerId": "A_OFFER_1"})
        self.idmd.call("setPublisherConsents", {"publisherToken": self.a_token, "consents": [
            {"name": "terms", "label": "Terms", "required": False}]})
        self.idmd.call("setCaptureSettings", {"publisherToken": self.a_token, "settings": [
            {"key": "birthDate", "enabled": True, "required": True}]})
        self.alice = self.idmd.call("registerCustomer", {
            "email": "alice@example.com", "password": PASSWORD, "publisherId": self.a, "locale": "en_GB",
            "country": "GB", "currency": "GBP", "externalId": "crm-1", "publisherToken": self.a_token})
        self.idmd.call("updateCaptureAnswers", {"jwt": self.alice["jwt"], "birthDate": "1990-01-01"})

    def snapshot(self):
        """Everything of A's these methods could touch, through A's own eyes."""
        creds = {"publisherToken": self.a_token}
        return {
            "export": self.idmd.call("exportCustomer", dict(creds, customerId=self.alice["customerId"])),
            "customers": self.idmd.call("listCustomers", creds),
            "capture": self.idmd.call("getCaptureSettings", creds),
            "consents": self.idmd.call("getPublisherConsents", creds),
            "offers": self.idmd.call("listOffers", creds),
        }

    def test_every_method_is_classified(self):
        methods = set(self.idmd.call("getServerInfo")["methods"])
        table = {m for m, _ in PUBLISHER_METHODS}
        self.assertEqual(methods - table - NOT_PUBLISHER_SCOPED, set(),
                         "a new method: add it to PUBLISHER_METHODS or NOT_PUBLISHER_SCOPED")
        self.assertEqual(table - methods, set())

    def b_credentials(self):
        """B's token, and the sessionID publisherLogin gives for it (which every publisher method
        but publisherLogin takes instead)."""
        b_session = self.idmd.call("publisherLogin", {"publisherToken": self.b_token,
                                                      "publisherId": self.b})["sessionID"]
        return [{"publisherToken": self.b_token}, {"sessionID": b_session}]

    def test_naming_another_publisher_is_forbidden(self):
        before = self.snapshot()
        for credential in self.b_credentials():
            for method, extra in PUBLISHER_METHODS:
                if method == "publisherLogin" and "sessionID" in credential:
                    continue
                params = {k: v.format(id=self.alice["customerId"]) if isinstance(v, str) else v
                          for k, v in extra.items()}
                params.update(credential, publisherId=self.a)
                with self.subTest(method=method, credential=list(credential)):
                    self.assertError(self.idmd.error(method, params), 403, "forbidden")
        self.assertEqual(self.snapshot(), before)

    def test_another_publishers_customer_is_not_found(self):
        before = self.snapshot()
        namings = [{"customerId": self.alice["customerId"]}, {"email": "alice@example.com"},
                   {"externalId": "crm-1"}]
        for method, naming, credential in itertools.product(CUSTOMER_METHODS, namings, self.b_credentials()):
            params = dict(naming, **credential)
            if method == "setCustomerDisabled":
                params["disabled"] = True
            if method == "setCustomerUnix":
                params["enabled"] = True
            with self.subTest(method=method, naming=naming, credential=list(credential)):
                e = self.idmd.error(method, params)
                self.assertError(e, 404, "not_found")
                # The same answer as for a customer nobody has.
                unknown = dict(params, **{k: "nobody" + str(v)[:8] for k, v in naming.items()})
                if "email" in naming:
                    unknown["email"] = "nobody@example.com"
                if "customerId" in naming:
                    unknown["customerId"] = "1000000000"
                self.assertEqual(self.idmd.error(method, unknown), e)
        self.assertEqual(self.snapshot(), before)

    def test_naming_another_publishers_offer(self):
        # The methods that take a publisherToken optionally also name the publisher by offerId:
        # B's token with A's offer is refused as naming a publisher that is not B.
        before = self.snapshot()
        for method, extra in [("registerCustomer", {"email": "mallory@example.com", "password": PASSWORD,
                                                    "externalId": "crm-1"}),
                              ("getPublisherConsents", {}),
                              ("requestPasswordReset", {"customerEmail": "alice@example.com"})]:
            for credential in self.b_credentials():
                with self.subTest(method=method, credential=list(credential)):
                    e = self.idmd.error(method, dict(extra, offerId="A_OFFER_1", **credential))
                    self.assertError(e, 400, "invalid_value")
                    self.assertEqual(e["data"]["field"], "offerId")
        self.assertEqual(self.snapshot(), before)

    def test_a_customer_token_reaches_only_its_publisher(self):
        # A customer's credential fixes the publisher: a publisherId param is not even accepted
        # (getCustomer ignored it once and answered about the token's customer). From an
        # unprivileged peer: an admin peer naming publisherId asks getCustomer's publisher form.
        methods = ("getCaptureStatus", "getCustomerConsents", "updateCaptureAnswers", "getCustomer")
        for credential in ("jwt", "customerToken"):
            replies = self.idmd.call_as(NOBODY, [[m, {credential: self.alice[credential], "publisherId": self.b}]
                                                 for m in methods])
            for method, reply in zip(methods, replies):
                with self.subTest(method=method, credential=credential):
                    self.assertError(reply["error"], -32602, "invalid_params")
                    self.assertEqual(reply["error"]["data"]["param"], "publisherId")

if __name__ == "__main__":
    main()
