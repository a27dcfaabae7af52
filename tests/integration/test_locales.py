#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Locale detection through the real socket: getLocales from the [locales] cidr networks (IPv4,
IPv6, longest prefix, IPv4-mapped), the default without customerIP and for an address in no
network, country overrides, currencies registration would refuse, bad input, its rate-limit
class and address; registerCustomer filling a missing locale, country and currency (explicit
values win and are still checked); configuration errors refused at start with their line; and a
MaxMind DB file, written by the test (mmdbwriter.py), asked before the networks."""

import os
import subprocess

from idmtest import IDMD, Idmd, IdmdTestCase, main
from mmdbwriter import write_mmdb

PASSWORD = "correct horse 9"
HAVE_MAXMINDDB = os.environ.get("IDM_HAVE_MAXMINDDB", "1") == "1"

# PLN, CHF and SEK accepted (the default [customers] currencies have no PLN or CHF).
NETWORKS = """\
[customers]
currencies = USD EUR GBP PLN CHF SEK NOK

[locales]
cidr = 192.0.2.0/24 PL
cidr = 192.0.2.128/25 DE
cidr = 192.0.2.192/26 CH
cidr = 192.0.2.200/32 GB
cidr = 2001:db8::/32 SE
cidr = 2001:db8:1::/48 NO
cidr = 198.51.100.0/24 BE
country = BE EUR fr_BE
"""


class Networks(IdmdTestCase):
    CONFIG = NETWORKS

    def locales(self, ip=None):
        return self.idmd.call("getLocales", {} if ip is None else {"customerIP": ip})

    def test_ipv4_longest_prefix(self):
        cases = [
            ("192.0.2.1", "PL", "PLN", "pl_PL"),
            ("192.0.2.127", "PL", "PLN", "pl_PL"),
            ("192.0.2.128", "DE", "EUR", "de_DE"),
            ("192.0.2.191", "DE", "EUR", "de_DE"),
            ("192.0.2.192", "CH", "CHF", "de_CH"),
            ("192.0.2.200", "GB", "GBP", "en_GB"),
            ("192.0.2.201", "CH", "CHF", "de_CH"),
        ]
        for ip, country, currency, locale in cases:
            with self.subTest(ip=ip):
                self.assertEqual(self.locales(ip), {"country": country, "currency": currency, "locale": locale,
                                                    "ipAddress": ip})

    def test_ipv6_longest_prefix_and_normalised(self):
        self.assertEqual(self.locales("2001:db8::1"),
                         {"country": "SE", "currency": "SEK", "locale": "sv_SE", "ipAddress": "2001:db8::1"})
        self.assertEqual(self.locales("2001:DB8:1:0:0:0:0:7"),
                         {"country": "NO", "currency": "NOK", "locale": "nb_NO", "ipAddress": "2001:db8:1::7"})
        self.assertEqual(self.locales("2001:db8:2::1")["country"], "SE")
        # an IPv4-mapped address is the IPv4 address; the reply keeps the form given, normalised
        self.assertEqual(self.locales("::FFFF:192.0.2.200"),
                         {"country": "GB", "currency": "GBP", "locale": "en_GB", "ipAddress": "::ffff:192.0.2.200"})

    def test_default(self):
        default = {"country": "US", "currency": "USD", "locale": "en_US"}
        # without customerIP (a Unix socket has no address): the default, ipAddress null
        self.assertEqual(self.locales(), default | {"ipAddress": None})
        # an address in no network, of either family
        self.assertEqual(self.locales("203.0.113.9"), default | {"ipAddress": "203.0.113.9"})
        self.assertEqual(self.locales("2001:db9::1"), default | {"ipAddress": "2001:db9::1"})
        self.assertEqual(self.locales("::ffff:203.0.113.9"), default | {"ipAddress": "::ffff:203.0.113.9"})

    def test_country_override(self):
        # the built-in table says nl_BE; the config says fr_BE
        self.assertEqual(self.locales("198.51.100.7"),
                         {"country": "BE", "currency": "EUR", "locale": "fr_BE", "ipAddress": "198.51.100.7"})

    def test_bad_input(self):
        for ip in ["", "x", "192.0.2", "192.0.2.256", " 192.0.2.1", "192.0.2.1 ", "192.0.2.0/24",
                   "fe80::1%eth0", "[2001:db8::1]", "localhost", "2001:db8::1::1", "1" * 64]:
            with self.subTest(ip=ip):
                e = self.idmd.error("getLocales", {"customerIP": ip})
                self.assertError(e, 400, "invalid_value")
                self.assertEqual(e["data"]["field"], "customerIP")
        for params, param in [({"customerIP": "1" * 65}, "customerIP"), ({"customerIP": 7}, "customerIP"),
                              ({"customerIP": None}, "customerIP"), ({"ip": "192.0.2.1"}, "ip"),
                              ({"publisherToken": "x"}, "publisherToken")]:
            with self.subTest(params=params):
                e = self.idmd.error("getLocales", params)
                self.assertError(e, -32602, "invalid_params")
                self.assertEqual(e["data"]["param"], param)

    def test_listed_and_anyone(self):
        self.assertIn("getLocales", self.idmd.call("getServerInfo")["methods"])
        reply, = self.idmd.call_as(65534, [["getLocales", {"customerIP": "192.0.2.1"}]])
        self.assertEqual(reply["result"]["country"], "PL")


class Fallbacks(IdmdTestCase):
    """With the default [customers] currencies (no PLN, no CHF) and another default country."""

    CONFIG = "[locales]\ndefault_country = DE\ncidr = 192.0.2.0/24 PL\ncidr = 2001:db8::/32 CH\n"

    def test_unaccepted_currency_becomes_the_defaults(self):
        self.assertEqual(self.idmd.call("getLocales"),
                         {"country": "DE", "currency": "EUR", "locale": "de_DE", "ipAddress": None})
        self.assertEqual(self.idmd.call("getLocales", {"customerIP": "192.0.2.1"}),
                         {"country": "PL", "currency": "EUR", "locale": "pl_PL", "ipAddress": "192.0.2.1"})
        self.assertEqual(self.idmd.call("getLocales", {"customerIP": "2001:db8::1"})["currency"], "EUR")


class RateLimit(IdmdTestCase):
    """getLocales is in the default class, and customerIP is its address parameter: an admin peer
    naming one is counted by it (per-source burst: half the class's 6)."""

    CONFIG = "[ratelimit.default]\nrate = 0.001\nburst = 6\nconcurrency = 10\n"

    def test_class_and_address(self):
        with self.idmd.client() as c:
            for _ in range(3):
                c.call("getLocales", {"customerIP": "192.0.2.1"})
            e = c.error("getLocales", {"customerIP": "192.0.2.1"})
            self.assertError(e, 429, "rate_limited")
            self.assertEqual((e["data"]["class"], e["data"]["limit"]), ("default", "rate"))
            # another address has its own bucket
            self.assertEqual(c.call("getLocales", {"customerIP": "192.0.2.2"})["ipAddress"], "192.0.2.2")


class Registration(IdmdTestCase):
    CONFIG = NETWORKS

    def setUp(self):
        super().setUp()
        self.pub = self.create_publisher()["publisherId"]

    def register(self, email, **kw):
        params = {"email": email, "password": PASSWORD, "publisherId": self.pub}
        params.update(kw)
        r = self.idmd.call("registerCustomer", params)
        me = self.idmd.call("getCustomer", {"jwt": r["jwt"]})
        return me["country"], me["currency"], me["locale"]

    def test_filled_from_customer_ip(self):
        self.assertEqual(self.register("pl@example.com", customerIP="192.0.2.1"), ("PL", "PLN", "pl_PL"))
        self.assertEqual(self.register("no@example.com", customerIP="2001:db8:1::1"), ("NO", "NOK", "nb_NO"))
        self.assertEqual(self.register("be@example.com", customerIP="198.51.100.1"), ("BE", "EUR", "fr_BE"))

    def test_filled_from_default(self):
        self.assertEqual(self.register("none@example.com"), ("US", "USD", "en_US"))
        self.assertEqual(self.register("far@example.com", customerIP="203.0.113.1"), ("US", "USD", "en_US"))

    def test_same_as_get_locales(self):
        for i, ip in enumerate(["192.0.2.1", "192.0.2.150", "192.0.2.200", "2001:db8::9", "203.0.113.1"]):
            with self.subTest(ip=ip):
                want = self.idmd.call("getLocales", {"customerIP": ip})
                got = self.register(f"c{i}@example.com", customerIP=ip)
                self.assertEqual(got, (want["country"], want["currency"], want["locale"]))

    def test_explicit_values_win(self):
        self.assertEqual(self.register("all@example.com", customerIP="192.0.2.1", country="GB", currency="EUR",
                                       locale="en_GB"), ("GB", "EUR", "en_GB"))
        # one field given: the others are still detected
        self.assertEqual(self.register("cur@example.com", customerIP="192.0.2.1", currency="GBP"),
                         ("PL", "GBP", "pl_PL"))
        self.assertEqual(self.register("loc@example.com", customerIP="192.0.2.1", locale="en_US"),
                         ("PL", "PLN", "en_US"))
        # an explicit country decides the currency and locale, wherever the address is
        self.assertEqual(self.register("de@example.com", customerIP="192.0.2.1", country="DE"),
                         ("DE", "EUR", "de_DE"))
        self.assertEqual(self.register("be2@example.com", country="BE"), ("BE", "EUR", "fr_BE"))

    def test_explicit_values_still_checked(self):
        base = {"email": "bad@example.com", "password": PASSWORD, "publisherId": self.pub, "customerIP": "192.0.2.1"}
        for change, reason in [({"country": "UK"}, "invalid_country"), ({"currency": "JPY"}, "invalid_currency"),
                               ({"locale": "pl-PL"}, "invalid_locale"), ({"customerIP": "192.0.2"}, "invalid_value")]:
            with self.subTest(change=change):
                self.assertError(self.idmd.error("registerCustomer", base | change), 400, reason)
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["customers"], 0)


def config_line(d, text):
    """The line number of text in d's config file (the harness puts its own lines first)."""
    with open(d.config) as f:
        for n, line in enumerate(f, 1):
            if line.rstrip("\n") == text:
                return n
    raise AssertionError(f"{text!r} not in {d.config}")


class Refusals(IdmdTestCase):
    """Bad [locales] settings stop idmd at start, naming the file and line where there is one."""

    def setUp(self):
        pass    # every test starts its own idmd

    def refused(self, config):
        d = Idmd(config)
        self.addCleanup(d.cleanup)
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(d.socket))
        return d, p.stderr

    def test_bad_values_name_their_line(self):
        for bad in ["cidr = 192.0.2.0/24 XX", "cidr = 192.0.2.1/24 PL", "cidr = 192.0.2.0/33 PL",
                    "cidr = 2001:db8::/32", "cidr = not-a-network PL", "country = XX EUR en_US",
                    "country = PL PLN", "default_country = UK", "maxmind_db = relative.mmdb"]:
            with self.subTest(bad=bad):
                d, err = self.refused(f"[locales]\ncidr = 198.51.100.0/24 BE\n{bad}\n")
                key = bad.split(" =")[0]
                self.assertIn(f"idmd.conf:{config_line(d, bad)}: invalid value '", err)
                self.assertIn(f"for key '{key}' in [locales]", err)

    def test_too_many_networks(self):
        lines = [f"cidr = 10.{i // 256}.{i % 256}.0/24 PL" for i in range(4097)]
        d, err = self.refused("[locales]\n" + "\n".join(lines) + "\n")
        self.assertIn(f"idmd.conf:{config_line(d, lines[-1])}: too many values for key 'cidr' in [locales]: "
                      "at most 4096.", err)
        # exactly the bound is fine
        d = Idmd("[locales]\n" + "\n".join(lines[:4096]) + "\n")
        self.addCleanup(d.cleanup)
        d.start()
        self.assertEqual(d.call("getLocales", {"customerIP": "10.15.255.1"})["country"], "PL")
        self.assertEqual(d.call("getLocales", {"customerIP": "10.16.0.1"})["country"], "US")

    def test_override_with_unaccepted_currency(self):
        _, err = self.refused("[locales]\ncountry = PL PLN pl_PL\n")
        self.assertIn("[locales] country = PL PLN pl_PL: currency PLN is not one of [customers] currencies", err)

    def test_maxmind_db_unusable(self):
        if not HAVE_MAXMINDDB:
            _, err = self.refused("[locales]\nmaxmind_db = /nonexistent.mmdb\n")
            self.assertIn("built without libmaxminddb", err)
            return
        _, err = self.refused("[locales]\nmaxmind_db = /nonexistent/GeoLite2-Country.mmdb\n")
        self.assertIn("maxmind_db=/nonexistent/GeoLite2-Country.mmdb", err)
        self.assertIn("refusing to start", err)
        # a file that is not a MaxMind DB
        d = Idmd("")
        self.addCleanup(d.cleanup)
        junk = os.path.join(d.tmp, "junk.mmdb")
        with open(junk, "wb") as f:
            f.write(b"not a database\n" * 100)
        with open(d.config, "a") as f:
            f.write(f"\n[locales]\nmaxmind_db = {junk}\n")
        p = subprocess.run(d.args(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"Failed to open [locales] maxmind_db={junk}", p.stderr)


class MaxMind(IdmdTestCase):
    """A MaxMind DB file is asked first; what it does not know goes on to the networks."""

    def setUp(self):
        if not HAVE_MAXMINDDB:
            self.skipTest("idmd was built without libmaxminddb (meson option maxminddb)")
        self.idmd = Idmd(NETWORKS + "cidr = 100.64.0.0/10 GB\n")
        self.addCleanup(self.idmd.cleanup)
        db = os.path.join(self.idmd.tmp, "test-country.mmdb")
        write_mmdb(db, [
            ("192.0.2.0/25", {"country": {"iso_code": "FR", "names": {"en": "France"}}}),   # in PL's /24
            ("192.0.2.64/26", {"country": {"iso_code": "ES"}}),                             # inside FR's /25
            ("203.0.113.0/24", {"country": {"iso_code": "SE"}, "continent": {"code": "EU"}}),
            ("2001:db8:2::/48", {"country": {"iso_code": "CH"}}),                           # in SE's /32
            ("198.18.0.0/15", {"registered_country": {"iso_code": "NO"}}),                  # no country
            ("100.64.0.0/10", {"country": {"iso_code": "EU"}}),                             # not a country
        ])
        with open(self.idmd.config, "a") as f:
            f.write(f"\n[locales]\nmaxmind_db = {db}\n")
        self.idmd.start()
        self.assertIn(f"Locale detection reads {db}.", self.idmd.log_text())

    def country(self, ip):
        return self.idmd.call("getLocales", {"customerIP": ip})["country"]

    def test_before_the_networks(self):
        self.assertEqual(self.idmd.call("getLocales", {"customerIP": "192.0.2.1"}),
                         {"country": "FR", "currency": "EUR", "locale": "fr_FR", "ipAddress": "192.0.2.1"})
        self.assertEqual(self.country("192.0.2.70"), "ES")
        self.assertEqual(self.country("::ffff:192.0.2.70"), "ES")
        self.assertEqual(self.country("203.0.113.1"), "SE")
        self.assertEqual(self.country("2001:db8:2::1"), "CH")
        self.assertEqual(self.country("198.19.255.1"), "NO")

    def test_what_it_does_not_know(self):
        self.assertEqual(self.country("192.0.2.130"), "DE")     # the networks' /25
        self.assertEqual(self.country("192.0.2.200"), "GB")
        self.assertEqual(self.country("2001:db8:3::1"), "SE")
        self.assertEqual(self.country("100.64.0.1"), "GB")      # "EU" is no country
        self.assertEqual(self.country("10.0.0.1"), "US")        # nowhere: the default
        self.assertEqual(self.idmd.call("getLocales")["country"], "US")

    def test_registration(self):
        pub = self.create_publisher()["publisherId"]
        r = self.idmd.call("registerCustomer", {"email": "fr@example.com", "password": PASSWORD, "publisherId": pub,
                                                "customerIP": "192.0.2.1"})
        me = self.idmd.call("getCustomer", {"jwt": r["jwt"]})
        self.assertEqual((me["country"], me["currency"], me["locale"]), ("FR", "EUR", "fr_FR"))


if __name__ == "__main__":
    main()
