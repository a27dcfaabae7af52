#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Remote auth, SSO links and publisher sessions through the real socket: the seeds' request
bodies as written (prepareRemoteAuth; getSingleSignOnByCustomer positional and named), their URLs
parsed with urllib (every parameter percent-encoded and read back as given), the tokens single
use, expiring (the test clock), bound to an address, and useless to another publisher; many
connections redeeming one token at once: exactly one succeeds; publisherLogin's sessionID accepted
where a publisherToken is, until 600 s have passed; ssoLogin finding by externalId, linking by
e-mail, creating, and refusing conflicts; a customer made without a password sets one through the
reset flow; every record goes with the customer."""

import json
import os
import shutil
import tempfile
import threading
import urllib.parse

from idmtest import Idmd, IdmdTestCase, Mailbox, mail_config, main

REMOTE_AUTH_URL = "https://acme.example/remote-auth?src=idm"
SSO_URL = "https://acme.example/sso"
REDIRECT = "https://acme.example/callback?next=/watch&x=a b"


class RemoteCase(IdmdTestCase):
    """A publisher with remoteAuthUrl, ssoUrl and ssoPages, an offer, on an idmd with the test clock."""

    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="idm-test-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.maildir = os.path.join(tmp, "mail")
        os.mkdir(self.maildir)
        self.idmd = Idmd(mail_config(self.maildir), tmp=tmp)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        p = self.create_publisher(remoteAuthUrl=REMOTE_AUTH_URL, ssoUrl=SSO_URL, resetUrl="https://acme.example/reset",
                                  allowedRedirectUris=["https://acme.example/callback?next=/watch&x=a%20b",
                                                       REDIRECT.replace(" ", "%20")],
                                  ssoPages={"account": "/my-account", "billing": "/my-account/billing"})
        self.pub, self.token = p["publisherId"], p["publisherToken"]
        self.idmd.call("addOffer", {"publisherToken": self.token, "offerId": "S531234647_GB"})
        other = self.create_publisher(name="Other", remoteAuthUrl=REMOTE_AUTH_URL, ssoUrl=SSO_URL)
        self.other, self.other_token = other["publisherId"], other["publisherToken"]
        self.idmd.call("addOffer", {"publisherToken": self.other_token, "offerId": "OTHER_1"})

    # --- helpers ---

    def prepare(self, email="john@example.com", **flow):
        return self.idmd.call("prepareRemoteAuth", {
            "publisherToken": self.token,
            "customerData": {"email": email, "locale": "en_GB", "currency": "GBP", "country": "GB"},
            "flowDescription": dict({"offerId": "S531234647_GB", "redirectUri": REDIRECT.replace(" ", "%20")},
                                    **flow)})

    def query(self, url):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)

    def remote_token(self, **kw):
        return self.query(self.prepare(**kw)["url"])["remote_token"][0]

    def session_id(self):
        return self.idmd.call("publisherLogin", {"publisherId": self.pub, "publisherToken": self.token})["sessionID"]

    def sso_login(self, email="jane@example.com", external_id="crm-7", **kw):
        return self.idmd.call("ssoLogin", dict({"publisherToken": self.token, "email": email,
                                                "externalId": external_id}, **kw))

    def sso(self, customer, **kw):
        params = {"sessionID": self.session_id(), "idCustomer": customer["customerId"],
                  "customerType": "CustomerReference"}
        params.update(kw)
        return self.idmd.call("getSingleSignOnByCustomer", params)

    def sso_token(self, url):
        return self.query(url)["token"][0]

    def assertSession(self, result, customer_id):
        self.assertEqual(result["customerId"], customer_id)
        me = self.idmd.call("getCustomer", {"jwt": result["jwt"]})
        self.assertEqual(me["customerId"], customer_id)
        self.assertEqual(self.idmd.call("introspectToken", {"token": result["refreshToken"]})["active"], True)


class PrepareRemoteAuth(RemoteCase):
    def test_seed_request(self):
        # The seed's request, as written.
        req = {"jsonrpc": "2.0", "id": "1", "method": "prepareRemoteAuth", "params": {
            "publisherToken": self.token,
            "customerData": {"email": "john@example.com", "locale": "en_GB", "currency": "GBP", "country": "GB"},
            "flowDescription": {"offerId": "S531234647_GB", "redirectUri": REDIRECT.replace(" ", "%20")}}}
        with self.idmd.client() as c:
            c.send_raw(json.dumps(req).encode() + b"\n")
            reply = c.recv_line()
        self.assertEqual(set(reply["result"]), {"url"}, reply)
        url = urllib.parse.urlsplit(reply["result"]["url"])
        self.assertEqual((url.scheme, url.netloc, url.path), ("https", "acme.example", "/remote-auth"))
        q = self.query(reply["result"]["url"])
        self.assertEqual(q["src"], ["idm"])     # the configured query is kept
        self.assertEqual(q["offerId"], ["S531234647_GB"])
        # The redirect URI comes back exactly as given, its '&', '?', '=' and '%' encoded.
        self.assertEqual(q["redirectUri"], [REDIRECT.replace(" ", "%20")])
        self.assertNotIn("&x=", url.query)
        token = q["remote_token"][0]
        self.assertRegex(token, r"^[A-Za-z0-9_-]{43}$")
        self.assertNotIn(token, json.dumps(self.idmd.table("tokens")))

        # The customer exists now, without a password; the token signs them in once.
        customer = self.idmd.call("getCustomer", {"publisherToken": self.token, "email": "john@example.com"})
        self.assertEqual((customer["locale"], customer["country"], customer["currency"]), ("en_GB", "GB", "GBP"))
        result = self.idmd.call("redeemToken", {"token": token})
        self.assertSession(result, customer["customerId"])
        self.assertEqual(result["publisherId"], self.pub)
        after = self.idmd.call("getCustomer", {"publisherToken": self.token, "email": "john@example.com"})
        self.assertIn("lastLoginDate", after)
        self.assertError(self.idmd.error("login", {"email": "john@example.com", "password": "anything at all 1",
                                                   "publisherId": self.pub}), 401, "invalid_credentials")

    def test_existing_customer_is_found(self):
        alice = self.idmd.call("registerCustomer", {"email": "Alice@example.com", "password": "correct horse 9",
                                                    "publisherId": self.pub})
        token = self.remote_token(email="alice@EXAMPLE.com")
        self.assertSession(self.idmd.call("redeemToken", {"token": token}), alice["customerId"])

    def test_refusals(self):
        cases = [
            ({"offerId": "NO_SUCH"}, 404, "not_found"),
            ({"offerId": "OTHER_1"}, 404, "not_found"),              # another publisher's offer
            ({"redirectUri": "https://evil.example/cb"}, 400, "invalid_uri"),
            ({"redirectUri": "https://acme.example/callback"}, 400, "invalid_uri"),   # exact match only
        ]
        for flow, code, reason in cases:
            with self.subTest(flow=flow):
                params = {"publisherToken": self.token, "customerData": {"email": "x@example.com"},
                          "flowDescription": dict({"offerId": "S531234647_GB",
                                                   "redirectUri": REDIRECT.replace(" ", "%20")}, **flow)}
                self.assertError(self.idmd.error("prepareRemoteAuth", params), code, reason)
        base = {"publisherToken": self.token,
                "flowDescription": {"offerId": "S531234647_GB", "redirectUri": REDIRECT.replace(" ", "%20")}}
        self.assertError(self.idmd.error("prepareRemoteAuth", dict(base, customerData={"email": "nope"})),
                         400, "invalid_email")
        self.assertError(self.idmd.error("prepareRemoteAuth", dict(base, customerData={"email": "a@b.example",
                                                                                      "country": "XX"})),
                         400, "invalid_country")
        e = self.idmd.error("prepareRemoteAuth", dict(base, customerData={"email": "a@b.example", "password": "x"}))
        self.assertError(e, -32602, "invalid_params")
        self.assertEqual(e["data"]["member"], "password")
        # Nobody was created by a refused call.
        self.assertEqual(self.idmd.call("listCustomers", {"publisherToken": self.token})["items"], [])
        # Only a publisher may call it.
        self.assertError(self.idmd.error("prepareRemoteAuth", dict(base, publisherToken="x" * 48,
                                                                   customerData={"email": "a@b.example"})),
                         401, "invalid_token")
        # Another publisher's token with this publisher's id.
        self.assertError(self.idmd.error("prepareRemoteAuth", dict(base, publisherToken=self.other_token,
                                                                   publisherId=self.pub,
                                                                   customerData={"email": "a@b.example"})),
                         403, "forbidden")

    def test_reuse_and_expiry(self):
        token = self.remote_token()
        self.idmd.call("redeemToken", {"token": token})
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 401, "invalid_token")
        token = self.remote_token()
        self.idmd.call("testAdvanceClock", {"seconds": 301})
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 401, "token_expired")
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 401, "invalid_token")
        self.assertError(self.idmd.error("redeemToken", {"token": "A" * 43}), 401, "invalid_token")

    def test_disabled_customer(self):
        token = self.remote_token()
        self.idmd.call("setCustomerDisabled", {"publisherToken": self.token, "email": "john@example.com",
                                               "disabled": True})
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 403, "account_disabled")

    def test_concurrent_redemption(self):
        token = self.remote_token()
        n = 16
        clients = [self.idmd.client() for _ in range(n)]
        barrier = threading.Barrier(n)
        replies = [None] * n

        def redeem(i):
            req = json.dumps({"jsonrpc": "2.0", "id": i, "method": "redeemToken", "params": {"token": token}})
            barrier.wait()
            clients[i].send_raw(req.encode() + b"\n")
            replies[i] = clients[i].recv_line()

        threads = [threading.Thread(target=redeem, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        ok = [r for r in replies if "result" in r]
        self.assertEqual(len(ok), 1, replies)
        for r in replies:
            if "error" in r:
                self.assertError(r["error"], 401, "invalid_token")

    def test_passwordless_customer_sets_a_password_by_reset(self):
        self.remote_token()
        mailbox = Mailbox(self.idmd, self.maildir)
        self.assertEqual(self.idmd.call("requestPasswordReset", {"customerEmail": "john@example.com",
                                                                 "publisherId": self.pub}), {})
        mail = mailbox.new()[0]
        text = mail.get_body(preferencelist=("plain",)).get_content()
        link = next(w for w in text.split() if w.startswith("https://"))
        token = self.query(link)["resetPasswordToken"][0]
        self.assertEqual(self.idmd.call("updatePassword", {
            "customerEmail": "john@example.com", "publisherId": self.pub, "resetPasswordToken": token,
            "newPassword": "battery staple 10"}), {})
        self.idmd.call("login", {"email": "john@example.com", "password": "battery staple 10", "publisherId": self.pub})

    def test_records_go_with_the_customer(self):
        self.remote_token()
        customer = self.idmd.call("getCustomer", {"publisherToken": self.token, "email": "john@example.com"})
        self.sso(customer)
        kinds = {k.split(":")[0] for k in self.idmd.table("tokens")}
        self.assertTrue({"remote", "sso", "pubsession"} <= kinds, kinds)
        self.idmd.call("deleteCustomer", {"publisherToken": self.token, "customerId": customer["customerId"]})
        self.idmd.wait_purged()     # records found only by a walk go in the background
        tokens = self.idmd.table("tokens")
        self.assertFalse([k for k in tokens if k.startswith(("remote:", "sso:"))], tokens.keys())
        # The publisher's session is not the customer's.
        self.assertTrue([k for k in tokens if k.startswith("pubsession:")])


class PublisherSession(RemoteCase):
    def test_login_and_expiry(self):
        r = self.idmd.call("publisherLogin", {"publisherId": self.pub, "publisherToken": self.token})
        self.assertEqual(r["expiresIn"], 600)
        self.assertRegex(r["sessionID"], r"^[A-Za-z0-9_-]{43}$")
        self.assertNotIn(r["sessionID"], json.dumps(self.idmd.table("tokens")))
        sid = r["sessionID"]
        # Accepted wherever a publisherToken is.
        self.assertEqual(self.idmd.call("listOffers", {"sessionID": sid})["items"][0]["offerId"], "S531234647_GB")
        self.idmd.call("listCustomers", {"sessionID": sid, "publisherId": self.pub})
        self.assertError(self.idmd.error("listCustomers", {"sessionID": sid, "publisherId": self.other}),
                         403, "forbidden")
        # Also where a publisherToken is optional: registerCustomer with the publisher's externalId.
        c = self.idmd.call("registerCustomer", {"sessionID": sid, "email": "kim@example.com",
                                                "password": "correct horse 9", "externalId": "crm-kim"})
        self.assertEqual(self.idmd.call("getCustomer", {"sessionID": sid, "externalId": "crm-kim"})["customerId"],
                         c["customerId"])
        self.idmd.call("testAdvanceClock", {"seconds": 599})
        self.idmd.call("listOffers", {"sessionID": sid})
        self.idmd.call("testAdvanceClock", {"seconds": 2})
        self.assertError(self.idmd.error("listOffers", {"sessionID": sid}), 401, "token_expired")
        self.assertError(self.idmd.error("listOffers", {"sessionID": "B" * 43}), 401, "invalid_token")

    def test_positional_and_refusals(self):
        with self.idmd.client() as c:
            reply = c.request("publisherLogin", [self.pub, self.token])
        self.assertEqual(reply["result"]["expiresIn"], 600)
        self.assertError(self.idmd.error("publisherLogin", {"publisherId": self.other, "publisherToken": self.token}),
                         403, "forbidden")
        self.assertError(self.idmd.error("publisherLogin", {"publisherId": self.pub, "publisherToken": "x" * 48}),
                         401, "invalid_token")
        # Other methods still refuse positional params.
        with self.idmd.client() as c:
            reply = c.request("listOffers", [self.token])
        self.assertError(reply["error"], -32602, "invalid_params")


class SingleSignOn(RemoteCase):
    def setUp(self):
        super().setUp()
        self.jane = self.sso_login()

    def test_seed_positional(self):
        sid = self.session_id()
        req = {"jsonrpc": "2.0", "method": "getSingleSignOnByCustomer", "id": 7,
               "params": [sid, "crm-7", "ExternalCustomerReference", "account", "utm_source=tv&q=a%26b+c", 60,
                          "192.0.2.7", "EN"]}
        with self.idmd.client() as c:
            c.send_raw(json.dumps(req).encode() + b"\n")
            reply = c.recv_line()
        url = reply["result"]
        self.assertIsInstance(url, str)
        parts = urllib.parse.urlsplit(url)
        self.assertEqual((parts.scheme, parts.netloc, parts.path), ("https", "acme.example", "/sso/my-account"))
        q = self.query(url)
        self.assertEqual(q["utm_source"], ["tv"])
        self.assertEqual(q["q"], ["a&b c"])
        self.assertEqual(q["lang"], ["en"])
        token = q["token"][0]
        # Bound to 192.0.2.7.
        self.assertError(self.idmd.error("redeemToken", {"token": token, "customerIP": "192.0.2.8"}),
                         401, "invalid_token")
        self.assertError(self.idmd.error("redeemToken", {"token": token, "customerIP": "192.0.2.7"}),
                         401, "invalid_token")    # used up by the wrong address

    def test_seed_named(self):
        url = self.idmd.call("getSingleSignOnByCustomer", {
            "sessionID": self.session_id(), "idCustomer": self.jane["customerId"],
            "customerType": "AvangateCustomerReference", "page": "billing", "request": {"a": "1 2", "b": "é&"},
            "validityTime": 30, "validationIp": "2001:db8::1", "languageCode": "de"})
        parts = urllib.parse.urlsplit(url)
        self.assertEqual(parts.path, "/sso/my-account/billing")
        q = self.query(url)
        self.assertEqual((q["a"], q["b"], q["lang"]), (["1 2"], ["é&"], ["de"]))
        r = self.idmd.call("redeemToken", {"token": q["token"][0], "customerIP": "2001:db8:0::1"})
        self.assertSession(r, self.jane["customerId"])

    def test_home_and_defaults(self):
        url = self.sso(self.jane)
        self.assertEqual(urllib.parse.urlsplit(url).path, "/sso")
        self.assertEqual(set(self.query(url)), {"token"})
        token = self.sso_token(url)
        # Unbound: any address, or none.
        self.assertSession(self.idmd.call("redeemToken", {"token": token, "customerIP": "198.51.100.1"}),
                           self.jane["customerId"])
        # Default validity: 10 s.
        token = self.sso_token(self.sso(self.jane, validationIp=""))
        self.idmd.call("testAdvanceClock", {"seconds": 11})
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 401, "token_expired")
        token = self.sso_token(self.sso(self.jane, validityTime=1))
        self.idmd.call("testAdvanceClock", {"seconds": 2})
        self.assertError(self.idmd.error("redeemToken", {"token": token}), 401, "token_expired")

    def test_refusals(self):
        cases = [
            ({"page": "nope"}, 400, "invalid_value"),
            ({"customerType": "Nope"}, 400, "invalid_value"),
            ({"validityTime": 0}, 400, "invalid_value"),
            ({"validityTime": 3601}, 400, "invalid_value"),
            ({"validationIp": "999.1.1.1"}, 400, "invalid_value"),
            ({"validationIp": 7}, -32602, "invalid_params"),
            ({"languageCode": "eng"}, 400, "invalid_value"),
            ({"request": "token=x"}, 400, "invalid_value"),
            ({"request": "a=%zz"}, 400, "invalid_value"),
            ({"request": {"lang": "fr"}}, 400, "invalid_value"),
            ({"request": 5}, -32602, "invalid_params"),
            ({"idCustomer": "1000000000"}, 404, "not_found"),
            ({"idCustomer": "crm-7"}, 404, "not_found"),    # not a customerId
            ({"customerType": "ExternalCustomerReference", "idCustomer": "crm-8"}, 404, "not_found"),
        ]
        for kw, code, reason in cases:
            with self.subTest(kw=kw):
                self.assertError(self.idmd.error("getSingleSignOnByCustomer", dict(
                    {"sessionID": self.session_id(), "idCustomer": self.jane["customerId"],
                     "customerType": "CustomerReference"}, **kw)), code, reason)
        # Another publisher: its sessionID finds nothing of this one's customers, and a
        # publisherId of this one is forbidden.
        other_sid = self.idmd.call("publisherLogin", {"publisherId": self.other,
                                                      "publisherToken": self.other_token})["sessionID"]
        self.assertError(self.idmd.error("getSingleSignOnByCustomer", {
            "sessionID": other_sid, "idCustomer": self.jane["customerId"], "customerType": "CustomerReference"}),
            404, "not_found")
        self.assertError(self.idmd.error("getSingleSignOnByCustomer", {
            "sessionID": other_sid, "publisherId": self.pub, "idCustomer": self.jane["customerId"],
            "customerType": "CustomerReference"}), 403, "forbidden")
        self.assertError(self.idmd.error("getSingleSignOnByCustomer", [
            "C" * 43, self.jane["customerId"], "CustomerReference"]), 401, "invalid_token")
        with self.idmd.client() as c:
            reply = c.request("getSingleSignOnByCustomer", ["a"] * 9)
        self.assertError(reply["error"], -32602, "invalid_params")


class SsoLogin(RemoteCase):
    def test_create_find_link(self):
        created = self.sso_login(locale="en_GB", country="GB", currency="GBP", customerIP="192.0.2.1")
        self.assertSession(created, created["customerId"])
        customer = self.idmd.call("getCustomer", {"publisherToken": self.token, "externalId": "crm-7"})
        self.assertEqual((customer["email"], customer["locale"]), ("jane@example.com", "en_GB"))
        # Found by externalId (the e-mail given does not matter then).
        again = self.sso_login(email="jane.new@example.com")
        self.assertEqual(again["customerId"], created["customerId"])
        # Found by e-mail and linked.
        bob = self.idmd.call("registerCustomer", {"email": "bob@example.com", "password": "correct horse 9",
                                                  "publisherId": self.pub})
        linked = self.sso_login(email="BOB@example.com", external_id="crm-9")
        self.assertEqual(linked["customerId"], bob["customerId"])
        self.assertEqual(self.idmd.call("getCustomer", {"publisherToken": self.token,
                                                        "externalId": "crm-9"})["customerId"], bob["customerId"])
        # bob's password still works.
        self.idmd.call("login", {"email": "bob@example.com", "password": "correct horse 9", "publisherId": self.pub})

    def test_conflicts_and_refusals(self):
        self.idmd.call("registerCustomer", {"email": "carol@example.com", "password": "correct horse 9",
                                            "publisherId": self.pub, "publisherToken": self.token,
                                            "externalId": "crm-1"})
        # carol has another externalId.
        self.assertError(self.idmd.error("ssoLogin", {"publisherToken": self.token, "email": "carol@example.com",
                                                      "externalId": "crm-2"}), 409, "external_id_exists")
        self.assertError(self.idmd.error("ssoLogin", {"publisherToken": self.token, "email": "nope",
                                                      "externalId": "crm-2"}), 400, "invalid_email")
        self.assertError(self.idmd.error("ssoLogin", {"publisherToken": self.token, "email": "d@example.com",
                                                      "externalId": "a\nb"}), 400, "invalid_value")
        self.assertError(self.idmd.error("ssoLogin", {"publisherToken": self.token, "email": "d@example.com",
                                                      "externalId": "x", "customerIP": "nope"}), 400, "invalid_value")
        # Publishers only.
        self.idmd.open_to_others()
        reply = self.idmd.call_as(65534, [["ssoLogin", {"email": "d@example.com", "externalId": "x"}]])[0]
        self.assertError(reply["error"], 403, "forbidden")
        self.assertError(self.idmd.error("ssoLogin", {"publisherToken": self.other_token, "publisherId": self.pub,
                                                      "email": "d@example.com", "externalId": "x"}),
                         403, "forbidden")
        # The same externalId at another publisher is another customer.
        a = self.sso_login(email="e@example.com", external_id="shared")
        b = self.idmd.call("ssoLogin", {"publisherToken": self.other_token, "email": "e@example.com",
                                        "externalId": "shared"})
        self.assertNotEqual(a["customerId"], b["customerId"])
        # A sessionID works as well.
        self.idmd.call("ssoLogin", {"sessionID": self.session_id(), "email": "e@example.com", "externalId": "shared"})


if __name__ == "__main__":
    main()
