#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What a customer leaves behind: a customer is created and used through every path that writes
records about it (registration with an externalId and consents, logins, a refresh, a password
change, the PAM path, consent answers, capture answers, a uid, a failed login's lockout record), idmd is stopped, and the
store is read directly (the store-inspect helper): customer_foreach_record() must name every
record of that customer in every table, exist, and name nothing of another customer; and
deleteCustomer must leave no record of it in any table and change nothing of another's."""

import json
import os
import subprocess

from idmtest import IdmdTestCase, main

STORE_INSPECT = os.environ.get("STORE_INSPECT", "store-inspect")
PASSWORD = "correct horse 9"
NEW_PASSWORD = "another horse 10"
DERIVED = {"meta", "token_expiry"}       # store-wide records and derived indexes


class LeftBehind(IdmdTestCase):
    def inspect(self, *args):
        p = subprocess.run([STORE_INSPECT, self.idmd.store_arg(), *args], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [json.loads(line) for line in p.stdout.splitlines()]

    def build(self):
        """Alice and Bob, each used through every path that writes records about a customer."""
        p = self.create_publisher()
        pub, token = p["publisherId"], p["publisherToken"]
        self.idmd.call("setPublisherConsents", {"publisherToken": token, "consents": [
            {"name": "terms", "label": "Terms", "required": True},
            {"name": "news", "label": "News", "required": False}]})
        terms = [{"name": "terms", "version": 1, "state": "accepted"}]

        def register(email, **extra):
            params = {"email": email, "password": PASSWORD, "publisherId": pub, "locale": "en_GB",
                      "country": "GB", "currency": "GBP", "consents": terms}
            params.update(extra)
            return self.idmd.call("registerCustomer", params)

        alice = register("Alice@Example.com", externalId="crm-1", publisherToken=token)
        bob = register("bob@example.com", externalId="crm-2", publisherToken=token)
        login = {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub}
        s2 = self.idmd.call("login", login)
        self.idmd.call("refreshToken", {"refreshToken": s2["refreshToken"]})
        self.idmd.call("updateCustomerConsents", {"jwt": alice["jwt"], "consents": [
            {"name": "news", "version": 1, "state": "accepted"}]})
        self.idmd.call("setCaptureSettings", {"publisherToken": token, "settings": [
            {"key": "birthDate", "enabled": True, "required": True}]})
        self.idmd.call("updateCaptureAnswers", {"jwt": alice["jwt"], "birthDate": "1990-01-01"})
        self.idmd.call("updateCaptureAnswers", {"jwt": bob["jwt"], "birthDate": "1991-01-01"})
        self.idmd.call("changePassword", {"jwt": alice["jwt"], "oldPassword": PASSWORD, "newPassword": NEW_PASSWORD})
        self.idmd.call("login", dict(login, password=NEW_PASSWORD))
        self.idmd.call("pamAuthenticate", {"publisherId": pub, "user": "alice@example.com",
                                           "password": NEW_PASSWORD, "service": "login", "rhost": "192.0.2.1"})
        self.idmd.call("login", {"email": "bob@example.com", "password": PASSWORD, "publisherId": pub})
        # Unix users: a uid each, in the uid index.
        self.idmd.call("updatePublisher", {"publisherId": pub, "unixUsers": "enabled"})
        for email in ("alice@example.com", "bob@example.com"):
            self.idmd.call("setCustomerUnix", {"publisherId": pub, "email": email, "enabled": True})
        # Last, so that no successful login clears it: a failure leaves a lockout record.
        self.idmd.error("login", dict(login, password="wrong horse 1"))
        self.idmd.error("login", {"email": "bob@example.com", "password": "wrong horse 1", "publisherId": pub})
        return pub, token, alice, bob

    def about(self, pub, customer_id, email, external_id, r):
        key, value = r["key"], r["value"]
        return r["table"] not in DERIVED and (
            value.get("customerId") == customer_id or customer_id in key or f"{pub}:{email}" == key or
            f"{pub}:{external_id}" == key or key.startswith(f"pam:{pub}:{email}:"))

    def test_every_record_of_a_customer_is_named(self):
        pub, token, alice, bob = self.build()
        self.assertEqual(self.idmd.stop(), 0)

        records = self.inspect("dump")
        named = {(r["table"], r["key"]) for r in self.inspect("customer", alice["customerId"])}
        in_store = {(r["table"], r["key"]) for r in records}
        self.assertLessEqual(named, in_store, "customer_foreach_record() names records that do not exist")

        alice_records = {(r["table"], r["key"]) for r in records
                         if self.about(pub, alice["customerId"], "alice@example.com", "crm-1", r)}
        bob_records = {(r["table"], r["key"]) for r in records
                       if self.about(pub, bob["customerId"], "bob@example.com", "crm-2", r)}
        self.assertEqual(alice_records - named, set(), "records of the customer that are not named")
        self.assertEqual(named & bob_records, set(), "another customer's records are named")
        # Every kind of record is there, so the test covers every path.
        tables = {t for t, _ in named}
        self.assertEqual(tables, {"customers", "customers_by_email", "customers_by_external_id", "consents", "capture",
                                  "lockouts", "tokens", "unix_uids"}, named)
        self.assertTrue(any(k.startswith("pam:") for t, k in named), "no PAM session record named")
        print(f"{len(named)} records of the customer named, {len(in_store)} in the store")

    def test_export_has_everything_and_no_secret(self):
        pub, token, alice, bob = self.build()
        other = self.create_publisher(name="Other")
        err = self.idmd.error("exportCustomer", {"publisherToken": other["publisherToken"], "email": "alice@example.com"})
        self.assertError(err, 404, "not_found")

        export = self.idmd.call("exportCustomer", {"publisherToken": token, "customerId": alice["customerId"]})
        self.assertEqual(export["customer"]["customerId"], alice["customerId"])
        self.assertEqual(export["customer"]["externalId"], "crm-1")
        self.assertEqual((export["customer"]["unixUid"], export["customer"]["unixEnabled"]), (1879048192, True))
        self.assertEqual(sorted(export["consents"]), ["news", "terms"])
        self.assertRegex(export["consents"]["terms"]["date"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual([(h["name"], h["source"]) for h in export["consentHistory"]],
                         [("terms", "registration"), ("news", "customer")])
        self.assertEqual(export["lockout"]["failures"], 1)
        # Registration, two logins and the PAM login: four sessions; the password change (made
        # with the registration's jwt, which stays) ended the login before it.
        self.assertEqual(len(export["sessions"]), 4, export["sessions"])
        self.assertEqual(sum(1 for x in export["sessions"] if x["revoked"]), 1, export["sessions"])
        self.assertEqual(len(export["pamSessions"]), 1)
        self.assertEqual(export["pamSessions"][0]["peerUid"], "0")
        # No secret of any kind: no token, no hash of one, no password hash.
        text = json.dumps(export)
        for secret in (alice["jwt"], alice["refreshToken"], alice["customerToken"], "passwordHash", "tokenHash",
                       "$argon2"):
            self.assertNotIn(secret, text)
        self.assertNotIn(bob["customerId"], text)
        # An admin names the publisher.
        admin = self.idmd.call("exportCustomer", {"publisherId": pub, "email": "Alice@example.com"})
        self.assertEqual(admin["customer"]["customerId"], alice["customerId"])

    def test_delete_leaves_no_trace(self):
        pub, token, alice, bob = self.build()
        other = self.create_publisher(name="Other")
        # Another publisher's token: as unknown as a missing customer.
        err = self.idmd.error("deleteCustomer", {"publisherToken": other["publisherToken"],
                                                 "customerId": alice["customerId"]})
        self.assertError(err, 404, "not_found")
        err = self.idmd.error("deleteCustomer", {"publisherToken": token, "email": "nobody@example.com"})
        self.assertError(err, 404, "not_found")
        self.idmd.stop()
        before = self.inspect("dump")
        bob_before = {(r["table"], r["key"]) for r in before
                      if self.about(pub, bob["customerId"], "bob@example.com", "crm-2", r)}
        self.idmd.start()

        result = self.idmd.call("deleteCustomer", {"publisherToken": token, "externalId": "crm-1"})
        self.assertEqual(result["customerId"], alice["customerId"])
        self.assertGreater(result["deletedRecords"], 10)
        # Its tokens are dead.
        self.assertError(self.idmd.error("getCustomer", {"jwt": alice["jwt"]}), 401, "invalid_token")
        err = self.idmd.error("deleteCustomer", {"publisherToken": token, "customerId": alice["customerId"]})
        self.assertError(err, 404, "not_found")
        self.assertIn("deleted with its", self.idmd.log_text())
        # Records only a walk over the token table finds (used tokens, ...) are purged in the
        # background, in bounded steps, starting at once.
        self.idmd.wait_purged()
        self.assertEqual(self.idmd.stop(), 0)

        after = self.inspect("dump")
        left = [r for r in after if self.about(pub, alice["customerId"], "alice@example.com", "crm-1", r)]
        self.assertEqual(left, [], "records of the deleted customer remain")
        bob_after = {(r["table"], r["key"]) for r in after
                     if self.about(pub, bob["customerId"], "bob@example.com", "crm-2", r)}
        self.assertEqual(bob_after, bob_before, "another customer's records changed")

        # Its password opens nothing (root, an admin peer, is told the account is gone; the
        # attempt itself is counted under the e-mail, as for any unknown address).
        self.idmd.start()
        self.assertError(self.idmd.error("login", {"email": "alice@example.com", "password": NEW_PASSWORD,
                                                   "publisherId": pub}), 401, "unknown_user")


if __name__ == "__main__":
    main()
