#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Roles come from SO_PEERCRED: a client running as an unprivileged uid (setpriv) is "anyone"
and gets 403 from admin methods; root is admin. And every method as every role: the table in
docs/security.md ("Every method, every role") says what each caller gets from each method, and
EveryMethodEveryRole calls each method as each of them against a fresh world and checks the
answer; every method idmd lists must have a row, and publisher B's call changes nothing of A's."""

import os
import re
import shutil
import tempfile
import unittest
import urllib.parse

from idmtest import FAKE_SENDMAIL, TEST_PG, Idmd, IdmdTestCase, Mailbox, main, mail_config

NOBODY = 65534
PASSWORD = "correct horse 9"
NEW_PASSWORD = "a new horse 10"
SECURITY_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "security.md")
REDIRECT = "https://app.example.com/cb"


class Roles(IdmdTestCase):
    def test_unprivileged_peer(self):
        pub = self.create_publisher()
        replies = self.idmd.call_as(NOBODY, [
            ["getServerInfo", {}],
            ["getStats", {}],
            ["createPublisher", {"name": "Evil"}],
            ["listPublishers", {}],
            ["rotatePublisherToken", {"publisherId": pub["publisherId"]}],
            ["addOffer", {"publisherId": pub["publisherId"], "offerId": "X"}],
            ["addOffer", {"publisherToken": pub["publisherToken"], "offerId": "Y"}],
        ])
        self.assertEqual(replies[0]["result"]["role"], "anyone")
        self.assertIsNone(replies[0]["result"]["adminGroup"])      # no idm-admin group here
        for r in replies[1:6]:
            self.assertError(r["error"], 403, "forbidden")
        # a publisher's token makes any local peer that publisher
        self.assertEqual(replies[6]["result"]["offerId"], "Y")
        # nothing the refused calls asked for happened
        self.assertEqual(len(self.idmd.call("listPublishers")["items"]), 1)
        self.assertEqual([o["offerId"] for o in
                          self.idmd.call("listOffers", {"publisherId": pub["publisherId"]})["items"]], ["Y"])

    def test_root_is_admin(self):
        self.assertEqual(self.idmd.call("getServerInfo")["role"], "admin")
        self.assertIn("methods", self.idmd.call("getStats"))


class AdminGroup(IdmdTestCase):
    # Debian's "nogroup" (gid 65534) stands in for idm-admin: no change to the host's groups.
    CONFIG = "\n[daemon]\nadmin_group = nogroup\n"

    def test_primary_group_member_is_admin(self):
        replies = self.idmd.call_as(NOBODY, [["getServerInfo", {}], ["createPublisher", {"name": "By group"}]])
        self.assertEqual(replies[0]["result"]["role"], "admin")
        self.assertEqual(replies[0]["result"]["adminGroup"], "nogroup")
        self.assertIn("publisherId", replies[1]["result"])

    def test_supplementary_group_member_is_admin(self):
        replies = self.idmd.call_as(NOBODY, [["getServerInfo", {}]], gid=4321, groups="65534")
        self.assertEqual(replies[0]["result"]["role"], "admin")
        replies = self.idmd.call_as(NOBODY, [["getServerInfo", {}]], gid=4321)
        self.assertEqual(replies[0]["result"]["role"], "anyone")
        self.assertEqual(replies[0]["result"]["adminGroup"], "nogroup")    # whom to ask


class AdminGroupDisabled(IdmdTestCase):
    CONFIG = "\n[daemon]\nadmin_group =\n"

    def test_only_root(self):
        info = self.idmd.call("getServerInfo")
        self.assertEqual(info["role"], "admin")
        self.assertIsNone(info["adminGroup"])


# The table's columns, in order; each role acts on its own customer of publisher A (so a call that
# deletes or changes one leaves the others' rows as they were).
ROLES = ("anonymous", "customer JWT", "customerToken", "publisher A", "publisher B", "admin")
# The param of each role's credential (anonymous and admin add none).
CREDENTIAL_PARAMS = {"customer JWT": "jwt", "customerToken": "customerToken", "publisher A": "publisherToken",
                     "publisher B": "publisherToken"}


def publisher_row(params, b_names_publisher=True):
    """A publisher method: an admin names publisher A; B names it too unless params name an object
    of A's (a customer, an offer) for B to reach for."""
    return {"params": params, "admin": {"publisherId": "{pub}"},
            "b": {"publisherId": "{pub}"} if b_names_publisher else {}}


# Minimal valid params of each method, before the role's credential is added. "{x}" is replaced
# by the acting role's own objects (World.names); "customer" replaces params for a customer's
# credential, "admin" and "b" add params for those roles.
CAPTURE = [{"key": "birthDate", "enabled": True, "required": True}]
TERMS = [{"name": "terms", "label": "Terms", "required": False}]
CALLS = {
    "getServerInfo": {"params": {}},
    "getStats": {"params": {}},
    "backup": {"params": {"path": "{tmp}/backup-{n}"}},
    "testAdvanceClock": {"params": {"seconds": 0}},
    "createPublisher": {"params": {"name": "New {n}"}},
    "updatePublisher": {"params": {"publisherId": "{pub}", "name": "A"}},
    "getPublisher": {"params": {"publisherId": "{pub}"}},
    "listPublishers": {"params": {}},
    "rotatePublisherToken": {"params": {"publisherId": "{pub}"}},
    "addOffer": publisher_row({"offerId": "NEW_{n}"}),
    "removeOffer": publisher_row({"offerId": "{offer}"}, b_names_publisher=False),
    "listOffers": publisher_row({}),
    "refreshToken": {"params": {"refreshToken": "{refresh}"}},
    "revokeToken": {"params": {"token": "{refresh}"}},
    "logoutAll": {"params": {}},
    "introspectToken": {"params": {"token": "{jwt}"}},
    "getJwks": {"params": {}},
    "rotateSigningKey": {"params": {}},
    "registerCustomer": {"params": {"email": "new-{n}@example.com", "password": PASSWORD,
                                    "publisherId": "{pub}"}},
    "login": {"params": {"email": "{email}", "password": PASSWORD, "publisherId": "{pub}"}},
    "getCustomer": dict(publisher_row({"customerId": "{cid}"}, b_names_publisher=False), customer={}),
    "updateCustomer": {"params": {"firstName": "Own"}},
    "deleteCustomer": publisher_row({"customerId": "{cid}"}, b_names_publisher=False),
    "exportCustomer": publisher_row({"customerId": "{cid}"}, b_names_publisher=False),
    "setCustomerDisabled": publisher_row({"customerId": "{cid}", "disabled": True}, b_names_publisher=False),
    "setCustomerUnix": publisher_row({"customerId": "{cid}", "enabled": True}, b_names_publisher=False),
    "listCustomers": publisher_row({}),
    "changePassword": {"params": {"oldPassword": PASSWORD, "newPassword": NEW_PASSWORD}},
    "pamAuthenticate": {"params": {"publisherId": "{pub}", "user": "{email}", "password": PASSWORD}},
    "pamAccount": {"params": {"publisherId": "{pub}", "user": "{email}"}},
    "pamAcceptConsents": {"params": {"publisherId": "{pub}", "user": "{email}",
                                     "consents": [{"name": "terms", "version": 1, "state": "accepted"}]}},
    "pamCaptureAnswers": {"params": {"publisherId": "{pub}", "user": "{email}",
                                     "answers": {"birthDate": "1990-01-01"}}},
    "pamChangePassword": {"params": {"publisherId": "{pub}", "user": "{email}", "oldPassword": PASSWORD}},
    "pamCloseSession": {"params": {"publisherId": "{pub}", "user": "{email}"}},
    "getPublisherConsents": {"params": {"publisherId": "{pub}"}},
    "setPublisherConsents": publisher_row({"consents": TERMS}),
    "getCustomerConsents": {"params": {}},
    "updateCustomerConsents": {"params": {"consents": [{"name": "terms", "version": 1, "state": "accepted"}]}},
    "setCaptureSettings": publisher_row({"settings": CAPTURE}),
    "getCaptureSettings": publisher_row({}),
    "getCaptureStatus": {"params": {}},
    "updateCaptureAnswers": {"params": {"birthDate": "1990-01-01"}},
    "requestPasswordReset": {"params": {"customerEmail": "{email}", "publisherId": "{pub}"}},
    "updatePassword": {"params": {"customerEmail": "{email}", "publisherId": "{pub}", "resetPasswordToken": "{reset}",
                                  "newPassword": NEW_PASSWORD}},
    "publisherLogin": {"params": {"publisherId": "{pub}"}},
    "prepareRemoteAuth": publisher_row({"customerData": {"email": "{email}"},
                                        "flowDescription": {"offerId": "{offer}", "redirectUri": REDIRECT}},
                                       b_names_publisher=False),
    "getSingleSignOnByCustomer": publisher_row({"idCustomer": "{cid}", "customerType": "CustomerReference"},
                                               b_names_publisher=False),
    "redeemToken": {"params": {"token": "{sso}"}},
    "ssoLogin": publisher_row({"email": "{email}", "externalId": "{ext}"}),
    "startDeviceLogin": {"params": {"publisherId": "{pub}"}},
    "pollDeviceLogin": {"params": {"deviceCode": "{deviceCode}"}},
    # anyone methods that check a jwt themselves, or take a customer named by an admin peer
    "approveDeviceLogin": {"params": {"userCode": "{userCode}"},
                           "admin": {"publisherId": "{pub}", "customerId": "{cid}"}},
    "denyDeviceLogin": {"params": {"userCode": "{userCode}"},
                        "admin": {"publisherId": "{pub}", "customerId": "{cid}"}},
    "unlockCustomer": publisher_row({"customerId": "{cid}"}, b_names_publisher=False),
    "getCustomerLockout": publisher_row({"customerId": "{cid}"}, b_names_publisher=False),
    "getLocales": {"params": {}},
    "listOutbox": {"params": {}},
    "retryOutbox": {"params": {"id": "{outbox}"}},
    "dropOutbox": {"params": {"id": "{outbox}"}},
    "testQueueMail": {"params": {"to": "{email}", "kind": "password-reset", "vars": {"code": "12345678"}}},
}

# Methods whose rows need mail that stays in the outbox (its command fails, retried in an hour).
FAILING_MAIL = "[mail]\nmail_command = " + FAKE_SENDMAIL + " --fail\nretry_initial = 1h\n"
OUTBOX_METHODS = {"retryOutbox", "dropOutbox"}


def fill(value, names):
    """value with every "{x}" in its strings replaced from names."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


def role_table():
    """{method: {role: expected outcome}} from the table in docs/security.md."""
    with open(SECURITY_MD) as f:
        text = f.read()
    section = text.split("\n## Every method, every role\n", 1)[1].split("\n## ", 1)[0]
    # The table whose header starts with "| method |" (the legend comes before it).
    lines = section.split("\n| method |", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(ROLES), header
    table = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(ROLES, cells[1:]))
    return table


def outcome(reply, role):
    """The class of an answer to role, as the table writes it."""
    if "result" in reply:
        return "ok"
    e = reply["error"]
    data = e.get("data") or {}
    if (e["code"], data.get("reason")) == (403, "forbidden"):
        return "denied"
    if (e["code"], data.get("reason")) == (404, "not_found"):
        return "not_found"
    if e["code"] == -32602 and data.get("param") == CREDENTIAL_PARAMS.get(role, "jwt"):
        return "n/a"        # the credential added is an unknown param, or (anonymous, admin) jwt is missing
    if e["code"] == -32602 and data.get("param") == "publisherToken" and role in ("anonymous", "admin"):
        return "n/a"        # publisherLogin: the token is the only credential it takes
    return f"{e['code']} {data.get('reason')}"


class World:
    """Publishers A and B on an idmd with the test clock; A has an offer, consent definitions,
    capture settings and, for each role, its own customer (with a JWT, refresh token and
    customerToken), offer and, where the method needs them, a pending device login, an SSO
    token, a reset token or an outbox message. B has a customer too."""

    def __init__(self, method):
        self.tmp = tmp = tempfile.mkdtemp(prefix="idm-test-")
        maildir = os.path.join(tmp, "mail")
        os.mkdir(maildir)
        self.idmd = Idmd(FAILING_MAIL if method in OUTBOX_METHODS else mail_config(maildir), tmp=tmp)
        self.client = None
        try:
            self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
            self.client = self.idmd.client()
            self.build(method, maildir)
        except BaseException:
            self.close()
            raise

    def close(self):
        """Stops idmd (failing on a sanitizer report) and removes the directory."""
        try:
            if self.client:
                self.client.close()
            self.idmd.cleanup()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self, method, maildir):
        tmp = self.tmp
        call = self.client.call
        urls = {"allowedRedirectUris": [REDIRECT], "resetUrl": "https://a.example/reset",
                "remoteAuthUrl": "https://a.example/remote", "ssoUrl": "https://a.example/sso",
                "deviceVerificationUrl": "https://a.example/device"}
        a = call("createPublisher", dict(urls, name="A"))
        b = call("createPublisher", dict(urls, name="B"))
        self.pub, self.a_token, self.b, self.b_token = (a["publisherId"], a["publisherToken"], b["publisherId"],
                                                        b["publisherToken"])
        self.a = {"publisherToken": self.a_token}
        call("addOffer", dict(self.a, offerId="A_OFFER"))
        call("setPublisherConsents", dict(self.a, consents=TERMS))
        call("setCaptureSettings", dict(self.a, settings=CAPTURE))
        call("registerCustomer", {"email": "bob@example.com", "password": PASSWORD, "publisherToken": self.b_token})
        self.names = {}
        for n, role in enumerate(ROLES):
            email = f"c{n}@example.com"
            c = call("registerCustomer", {"email": email, "password": PASSWORD, "publisherToken": self.a_token,
                                          "externalId": f"crm-{n}"})
            call("addOffer", dict(self.a, offerId=f"A_OFFER_{n}"))
            self.names[role] = {"tmp": tmp, "n": n, "pub": self.pub, "email": email, "cid": c["customerId"],
                                "ext": f"crm-{n}", "offer": f"A_OFFER_{n}", "jwt": c["jwt"],
                                "refresh": c["refreshToken"], "ctoken": c["customerToken"]}
        for role, names in self.names.items():
            if method in ("pollDeviceLogin", "approveDeviceLogin", "denyDeviceLogin"):
                d = call("startDeviceLogin", {"publisherId": self.pub})
                names.update(deviceCode=d["deviceCode"], userCode=d["userCode"])
                if method == "pollDeviceLogin":
                    call("approveDeviceLogin", {"userCode": d["userCode"], "publisherId": self.pub,
                                                "customerId": names["cid"]})
            if method == "redeemToken":
                url = call("getSingleSignOnByCustomer", dict(self.a, idCustomer=names["cid"],
                                                             customerType="CustomerReference"))
                names["sso"] = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
            if method == "updatePassword":
                call("requestPasswordReset", {"customerEmail": names["email"], "publisherId": self.pub})
            if method in OUTBOX_METHODS:
                call("testQueueMail", {"to": names["email"], "kind": "password-reset", "vars": {"code": "1"}})
        if method == "updatePassword":
            for mail in Mailbox(self.idmd, maildir).new():
                link = re.search(r"https://\S+", mail.get_body(preferencelist=("plain",)).get_content()).group(0)
                names = next(v for v in self.names.values() if v["email"] == str(mail["To"]))
                names["reset"] = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["resetPasswordToken"][0]
        if method in OUTBOX_METHODS:
            items = call("listOutbox")["items"]
            for names in self.names.values():
                names["outbox"] = next(i["id"] for i in items if i["to"] == names["email"])

    def params(self, method, role):
        row = CALLS[method]
        names = self.names[role]
        params = row.get("customer", row["params"]) if role in ("customer JWT", "customerToken") else row["params"]
        params = fill(params, names)
        if role == "customer JWT":
            params["jwt"] = names["jwt"]
        elif role == "customerToken":
            params["customerToken"] = names["ctoken"]
        elif role == "publisher A":
            params["publisherToken"] = self.a_token
        elif role == "publisher B":
            params.update(fill(row.get("b", {}), names), publisherToken=self.b_token)
        elif role == "admin":
            params.update(fill(row.get("admin", {}), names))
        return params

    def snapshot(self):
        """Everything of A's that B's call could reach, through an admin's eyes."""
        call = self.client.call
        a = {"publisherId": self.pub}
        return {
            "publisher": call("getPublisher", a),
            "customers": [call("exportCustomer", dict(a, customerId=n["cid"])) for n in self.names.values()],
            "sessions": [call("introspectToken", {"token": n["refresh"]}) for n in self.names.values()],
            "lockouts": [call("getCustomerLockout", dict(a, customerId=n["cid"])) for n in self.names.values()],
            "list": call("listCustomers", a),
            "offers": call("listOffers", a),
            "consents": call("getPublisherConsents", a),
            "capture": call("getCaptureSettings", a),
        }


class EveryMethodEveryRole(unittest.TestCase):
    def test_every_method_every_role(self):
        table = role_table()
        self.assertEqual(sorted(CALLS), sorted(table), "CALLS and the table in docs/security.md differ")
        for method in table:
            with self.subTest(method=method):
                world = World(method)
                try:
                    self.check(world, method, table)
                finally:
                    world.close()

    def check(self, world, method, table):
        if method == "getServerInfo":
            listed = set(world.client.call("getServerInfo")["methods"])
            self.assertEqual(listed ^ set(table), set(), "every method idmd lists needs a row, and no more")
        # Publisher B first, alone: nothing of A's may change.
        before = world.snapshot()
        replies = {"publisher B": world.idmd.call_as(NOBODY, [[method, world.params(method, "publisher B")]])[0]}
        self.assertEqual(world.snapshot(), before, f"publisher B's {method} changed something of A's")
        if table[method]["customer JWT"] == "ok":
            self.check_another_customer(world, method, table)
        others = [r for r in ROLES if r not in replies and r != "admin"]
        replies.update(zip(others, world.idmd.call_as(NOBODY, [[method, world.params(method, r)] for r in others])))
        replies["admin"] = world.client.request(method, world.params(method, "admin"))
        got = {r: outcome(replies[r], r) for r in ROLES}
        want = dict(table[method])
        if TEST_PG and method == "backup":
            want["admin"] = "400 not_supported"     # a PostgreSQL store is pg_dump's to back up
        self.assertEqual(got, want, f"| `{method}` | " + " | ".join(got[r] for r in ROLES) + f" |\n{replies}")

    def check_another_customer(self, world, method, table):
        """A customer's own credential, with another customer (or publisher B) named beside it:
        refused as a param it may not give (-32602 naming it), and nothing of anyone's changed
        (the snapshot holds every customer of A's export)."""
        other = world.names["anonymous"]        # a customer of A that neither credential is
        namings = [{"customerId": other["cid"]}, {"email": other["email"]}, {"externalId": other["ext"]},
                   {"customerEmail": other["email"]}, {"publisherId": world.b}]
        before = world.snapshot()
        for credential in (c for c in ("customer JWT", "customerToken") if table[method][c] == "ok"):
            calls = [[method, dict(world.params(method, credential), **naming)] for naming in namings]
            for naming, reply in zip(namings, world.idmd.call_as(NOBODY, calls)):
                with self.subTest(method=method, credential=credential, naming=naming):
                    self.assertEqual(reply.get("error", {}).get("code"), -32602, reply)
                    self.assertEqual(reply["error"]["data"]["param"], next(iter(naming)), reply)
        self.assertEqual(world.snapshot(), before, f"{method} with another customer named changed something")


if __name__ == "__main__":
    main()
