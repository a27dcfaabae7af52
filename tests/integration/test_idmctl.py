#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""idmctl against a real idmd (status, publishers, offers, call, errors and exit codes), checked
against what the daemon itself says over a plain socket; and against small fake daemons for the
transport's failure cases (silence, a reply to another id, an oversized reply, retryAfter)."""

import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from idmtest import TEST_PG, IDMCTL, IdmdTestCase, main, run_as

RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def idmctl(*args, socket_path=None, env=None, input=None, timeout=60):
    argv = [IDMCTL] + (["--socket", socket_path] if socket_path else []) + list(args)
    e = dict(os.environ)
    e.pop("IDM_SOCKET", None)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, input=input, env=e, timeout=timeout)


def table(stdout):
    """Parses an aligned table: a list of dicts keyed by header, checking the alignment."""
    lines = stdout.rstrip("\n").split("\n")
    header = lines[0]
    names = re.findall(r"\S+(?: \S+)*", header)     # headers may contain single spaces
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines[1:]:
        aligned = [s == 0 or line[s - 2:s] == "  " for s in starts]
        assert all(aligned), f"misaligned row {line!r} under {header!r}"
        cells = [line[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    assert all(not line.endswith(" ") for line in lines), "trailing blanks"
    return rows


def fields(stdout):
    """'Key: value' lines as a dict (continuation lines are appended to a list)."""
    out, last = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^(\S[^:]*):\s+(.*)$", line)
        if m:
            last = m.group(1)
            out[last] = m.group(2)
        elif line.startswith(" ") and last:
            prev = out[last]
            out[last] = (prev if isinstance(prev, list) else [prev]) + [line.strip()]
    return out


class IdmctlCase(IdmdTestCase):
    """idmctl run against the test's idmd (no tests here: other modules import it)."""

    def run_ctl(self, *args, **kw):
        return idmctl(*args, socket_path=self.idmd.socket, **kw)

    def ok(self, *args, **kw):
        p = self.run_ctl(*args, **kw)
        self.assertEqual(p.returncode, 0, f"idmctl {args}: {p.stderr}")
        self.assertEqual(p.stderr, "")
        return p.stdout

    def fails(self, code, *args, **kw):
        p = self.run_ctl(*args, **kw)
        self.assertEqual(p.returncode, code, f"idmctl {args}: {p.stdout} {p.stderr}")
        self.assertTrue(p.stderr.startswith("idmctl: "), p.stderr)
        return p


class Idmctl(IdmctlCase):
    def test_status(self):
        info = self.idmd.call("getServerInfo")
        keys = self.idmd.call("getStats")["keys"]
        out = self.ok("status")
        self.assertRegex(out, r"(?m)^Daemon:\s+up")
        self.assertIn(self.idmd.socket, out)
        self.assertIn(info["version"], out)
        self.assertIn(f"protocol {info['protocolVersion']}", out)
        self.assertIn(keys["active"], out)
        for kid in keys["verifying"]:
            self.assertIn(kid, out)
        for label in ("Uptime:", "Connections:", "Store:", "Store entries:", "Signing keys:", "Worker queue:"):
            self.assertIn(label, out)
        if TEST_PG:
            self.assertRegex(out, r"PostgreSQL, reachable, database [0-9.]+ (B|KiB|MiB|GiB)")
        else:
            self.assertRegex(out, r"map [0-9.]+ (B|KiB|MiB|GiB), used [0-9.]+ (B|KiB|MiB|GiB), file")
        self.assertRegex(out, r"publishers\s+0")

        # IDM_SOCKET instead of --socket, and options after the command
        p = idmctl("status", "--json", env={"IDM_SOCKET": self.idmd.socket})
        self.assertEqual(p.returncode, 0, p.stderr)
        j = json.loads(p.stdout)
        self.assertEqual(j["serverInfo"]["version"], info["version"])
        self.assertEqual(j["stats"]["keys"]["active"], keys["active"])
        self.assertIn("publishers", j["stats"]["store"]["entries"])

        # --socket wins over IDM_SOCKET
        p = idmctl("status", socket_path=self.idmd.socket, env={"IDM_SOCKET": "/nonexistent/socket"})
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_publisher_round_trip(self):
        out = self.ok("publisher", "create", "Acme TV",
                      "--redirect-uri", "https://tv.acme.example/cb",
                      "--redirect-uri", "https://www.acme.example/cb",
                      "--reset-url", "https://acme.example/reset",
                      "--sso-url", "https://acme.example/sso",
                      "--sso-page", "account=/my-account")
        f = fields(out)
        pid, token = f["Publisher ID"], f["Publisher token"]
        self.assertRegex(pid, r"^[1-9][0-9]{8}$")
        self.assertRegex(token, r"^[A-Za-z0-9_-]{48}$")
        self.assertIn("shown only once", out)
        # the token works
        self.assertEqual(self.idmd.call("listOffers", {"publisherToken": token})["items"], [])
        rec = self.idmd.call("getPublisher", {"publisherId": pid})
        self.assertEqual(rec["allowedRedirectUris"], ["https://tv.acme.example/cb", "https://www.acme.example/cb"])
        self.assertEqual(rec["resetUrl"], "https://acme.example/reset")
        self.assertEqual(rec["ssoPages"], {"account": "/my-account"})

        # --json create, for scripts
        j = json.loads(self.ok("--json", "publisher", "create", "Beta Radio"))
        self.assertRegex(j["publisherId"], r"^[1-9][0-9]{8}$")
        self.assertRegex(j["publisherToken"], r"^[A-Za-z0-9_-]{48}$")

        # list: the table and the JSON
        rows = table(self.ok("publisher", "list"))
        self.assertEqual(list(rows[0].keys()), ["ID", "NAME", "REDIRECT URIS", "CREATED"])
        by_id = {r["ID"]: r for r in rows}
        self.assertEqual(set(by_id), {pid, j["publisherId"]})
        self.assertEqual(by_id[pid]["NAME"], "Acme TV")
        self.assertEqual(by_id[pid]["REDIRECT URIS"], "https://tv.acme.example/cb (+1 more)")
        self.assertRegex(by_id[pid]["CREATED"], "^" + RFC3339 + "$")
        self.assertEqual(by_id[j["publisherId"]]["REDIRECT URIS"], "-")
        listed = json.loads(self.ok("publisher", "list", "--json"))
        self.assertEqual(listed, self.idmd.call("listPublishers"))
        created = {p["publisherId"]: p["createdDate"] for p in listed["items"]}
        self.assertRegex(created[pid], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(by_id[pid]["CREATED"], created[pid])

        # show
        f = fields(self.ok("publisher", "show", pid))
        self.assertEqual(f["Publisher ID"], pid)
        self.assertEqual(f["Name"], "Acme TV")
        self.assertEqual(f["Redirect URIs"], ["https://tv.acme.example/cb", "https://www.acme.example/cb"])
        self.assertEqual(f["Reset URL"], "https://acme.example/reset")
        self.assertEqual(f["Remote auth URL"], "-")
        self.assertEqual(f["SSO pages"], "account=/my-account")
        self.assertRegex(f["Created"], "^" + RFC3339 + "$")
        self.assertEqual(json.loads(self.ok("--json", "publisher", "show", pid)), rec)

        # update: rename, replace the URIs, clear the reset URL and the SSO pages
        f = fields(self.ok("publisher", "update", pid, "--name", "Acme Television",
                           "--redirect-uri", "https://new.acme.example/cb", "--reset-url=", "--sso-page="))
        self.assertEqual(f["Name"], "Acme Television")
        rec = self.idmd.call("getPublisher", {"publisherId": pid})
        self.assertEqual(rec["name"], "Acme Television")
        self.assertEqual(rec["allowedRedirectUris"], ["https://new.acme.example/cb"])
        self.assertNotIn("resetUrl", rec)
        self.assertEqual(rec.get("ssoPages", {}), {})
        self.assertEqual(rec["ssoUrl"], "https://acme.example/sso")    # untouched
        j2 = json.loads(self.ok("publisher", "update", pid, "--remote-auth-url", "https://acme.example/ra",
                                "--json"))
        self.assertEqual(j2["remoteAuthUrl"], "https://acme.example/ra")
        # nothing to update, and a refused value
        self.fails(2, "publisher", "update", pid)
        p = self.fails(1, "publisher", "update", pid, "--redirect-uri", "http://evil.example/")
        self.assertIn("(invalid_uri", p.stderr)
        p = self.fails(1, "publisher", "show", "999999999")
        self.assertEqual(p.stderr.count("\n"), 1)
        self.assertIn("(not_found)", p.stderr)

        # rotate-token: a new token that works, the old one no longer
        out = self.ok("publisher", "rotate-token", pid)
        new = fields(out)["Publisher token"]
        self.assertIn("shown only once", out)
        self.assertNotEqual(new, token)
        self.assertError(self.idmd.error("listOffers", {"publisherToken": token}), 401, "invalid_token")
        self.idmd.call("listOffers", {"publisherToken": new})
        j3 = json.loads(self.ok("--json", "publisher", "rotate-token", pid))
        self.assertEqual(j3["publisherId"], pid)
        self.assertNotEqual(j3["publisherToken"], new)

    def test_offers(self):
        pub = self.create_publisher()
        pid = pub["publisherId"]
        self.assertEqual(self.ok("offer", "list", pid), "No offers.\n")
        f = fields(self.ok("offer", "add", pid, "R123_US", "--title", "Monthly (US)"))
        self.assertEqual(f["Offer ID"], "R123_US")
        self.assertEqual(f["Title"], "Monthly (US)")
        j = json.loads(self.ok("--json", "offer", "add", pid, "R123_DE"))
        self.assertEqual(j["offerId"], "R123_DE")
        self.assertEqual(j["publisherId"], pid)

        rows = table(self.ok("offer", "list", pid))
        self.assertEqual([r["OFFER ID"] for r in rows], ["R123_DE", "R123_US"])
        self.assertEqual({r["OFFER ID"]: r["TITLE"] for r in rows}, {"R123_DE": "-", "R123_US": "Monthly (US)"})
        for r in rows:
            self.assertRegex(r["CREATED"], "^" + RFC3339 + "$")
        self.assertEqual(json.loads(self.ok("offer", "list", pid, "--json")),
                         self.idmd.call("listOffers", {"publisherToken": pub["publisherToken"]}))

        p = self.fails(1, "offer", "add", pid, "R123_US")
        self.assertIn("(offer_exists)", p.stderr)
        self.assertEqual(self.ok("offer", "remove", pid, "R123_US"), "")
        self.assertEqual([o["offerId"] for o in self.idmd.call("listOffers", {"publisherId": pid})["items"]],
                         ["R123_DE"])
        p = self.fails(1, "offer", "remove", pid, "R123_US")
        self.assertIn("(not_found)", p.stderr)
        self.fails(2, "offer", "add", pid)

    def test_customers(self):
        pub = self.create_publisher()["publisherId"]
        for email, first in (("zoe@example.com", "Zoe"), ("adam@example.com", None)):
            params = {"email": email, "password": "correct horse 9", "publisherId": pub, "locale": "en_GB",
                      "country": "GB", "currency": "GBP"}
            if first:
                params["firstName"] = first
            self.idmd.call("registerCustomer", params)
        rows = table(self.ok("customer", "list", "--publisher", pub))
        self.assertEqual([r["E-MAIL"] for r in rows], ["adam@example.com", "zoe@example.com"])
        self.assertEqual(rows[1]["NAME"], "Zoe")
        rows = table(self.ok("customer", "list", "zo", "--publisher", pub))
        self.assertEqual([r["E-MAIL"] for r in rows], ["zoe@example.com"])
        zoe = rows[0]["CUSTOMER ID"]

        f = fields(self.ok("customer", "show", "zoe@example.com", "--publisher", pub))
        self.assertEqual(f["Customer ID"], zoe)
        self.assertEqual(f["First name"], "Zoe")
        self.assertEqual(f["Locked"], "no")
        f = fields(self.ok("customer", "show", "nobody@example.com", "--publisher", pub))
        self.assertEqual(f["Customer ID"], "- (no account)")

        export = json.loads(self.ok("customer", "export", zoe, "--publisher", pub))
        self.assertEqual(export["customer"]["email"], "zoe@example.com")
        self.assertIn("disabled (its sessions ended)", self.ok("customer", "disable", zoe, "--publisher", pub))
        self.assertTrue(json.loads(self.ok("customer", "export", zoe, "--publisher", pub))["customer"]["disabled"])
        self.assertIn("enabled", self.ok("customer", "enable", "zoe@example.com", "--publisher", pub))
        self.assertIn("deleted", self.ok("customer", "delete", zoe, "--publisher", pub))
        p = self.fails(1, "customer", "export", zoe, "--publisher", pub)
        self.assertIn("no such customer", p.stderr)
        self.assertEqual([r["E-MAIL"] for r in table(self.ok("customer", "list", "--publisher", pub))],
                         ["adam@example.com"])
        self.fails(2, "customer", "list")        # --publisher is required

    def test_call(self):
        out = self.ok("call", "getServerInfo")
        self.assertEqual(json.loads(out), self.idmd.call("getServerInfo"))
        self.assertIn("\n  ", out)      # indented
        pub = json.loads(self.ok("call", "createPublisher", '{"name": "Via Call"}'))
        # params from standard input
        rec = json.loads(self.ok("call", "getPublisher", "-", input=json.dumps({"publisherId": pub["publisherId"]})))
        self.assertEqual(rec["name"], "Via Call")
        # an array is passed through (and refused by methods without positional params)
        p = self.fails(1, "call", "listPublishers", "[]")
        self.assertEqual(p.stderr.count("\n"), 1)

    def test_call_list(self):
        methods = self.idmd.call("getServerInfo")["methods"]
        out = self.ok("call", "--list")
        self.assertEqual(out.splitlines(), methods)
        for m in ("getServerInfo", "getStats", "createPublisher", "getPublisherConsents", "setPublisherConsents",
                  "listCustomers"):
            self.assertIn(m, out.splitlines())
        self.assertEqual(json.loads(self.ok("--list", "call", "--json")), methods)
        self.fails(2, "call", "--list", "getServerInfo")
        self.fails(2, "status", "--list")
        p = idmctl("call", "--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--list", p.stdout)

    def test_call_error(self):
        p = self.fails(1, "call", "createPublisher", "{}")
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        self.assertRegex(p.stderr, r"^idmctl: .+ \(invalid_params, param 'name'\)\n$")
        p = self.fails(1, "call", "noSuchMethod")
        self.assertIn("(unknown_method)", p.stderr)

    def test_usage_errors(self):
        for args in (["call", "getServerInfo", "{bad"],
                     ["call", "getServerInfo", '"a string"'],
                     ["call", "getServerInfo", '{"a": 1, "a": 2}'],
                     ["call"],
                     ["frobnicate"],
                     [],
                     ["publisher"],
                     ["publisher", "frobnicate"],
                     ["publisher", "show"],
                     ["publisher", "show", "1", "2"],
                     ["status", "--title", "x"],
                     ["publisher", "create", "X", "--name", "Y"],
                     ["publisher", "create", "X", "--sso-page", "novalue"],
                     ["--no-such-option", "status"],
                     ["--timeout", "0", "status"],
                     ["--timeout", "soon", "status"]):
            p = self.run_ctl(*args)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")
            self.assertEqual(p.stdout, "", args)
            self.assertIn("idmctl", p.stderr, args)
        p = self.run_ctl("call", "getServerInfo", "{bad")
        self.assertIn("invalid JSON", p.stderr)
        self.assertIn("Usage: idmctl", p.stderr)
        p = self.run_ctl("frobnicate")
        self.assertIn("unknown command 'frobnicate'", p.stderr)
        # getopt's complaints too start with "idmctl: ", whatever path idmctl was run by
        for args, message in ((["--no-such-option", "status"], "unknown or ambiguous option '--no-such-option'"),
                              (["--pub", "1", "status"], "unknown or ambiguous option '--pub'"),
                              (["-x", "status"], "unknown option '-x'"),
                              (["status", "--socket"], "option '--socket' needs an argument"),
                              (["--json=yes", "status"], "option '--json' takes no argument")):
            p = self.run_ctl(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertTrue(p.stderr.startswith("idmctl: " + message + "\n"), p.stderr)
        # nothing was created by the refused commands
        self.assertEqual(self.idmd.call("listPublishers")["items"], [])

    def test_help_and_version(self):
        for args in (["--help"], ["-h"], ["help"]):
            p = idmctl(*args)
            self.assertEqual(p.returncode, 0)
            for cmd in ("status", "publisher create", "publisher rotate-token", "offer add", "call",
                        "consents show", "consents set", "--file", "--list"):
                self.assertIn(cmd, p.stdout)
        for cmd in (["consents", "show"], ["consents", "set"], ["call"]):
            for args in (cmd + ["--help"], ["help"] + cmd):
                p = idmctl(*args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(" ".join(cmd) + " ", p.stdout)
        # Help for one command family or one command.
        for args in (["publisher", "--help"], ["help", "publisher"], ["publisher", "create", "-h"]):
            p = idmctl(*args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("publisher create", p.stdout)
            self.assertNotIn("offer add", p.stdout)
        p = idmctl("help", "customer", "delete")
        self.assertIn("customer delete", p.stdout)
        self.assertNotIn("customer list", p.stdout)
        p = idmctl("help", "nosuch")
        self.assertEqual(p.returncode, 2)
        self.assertTrue(p.stderr.startswith("idmctl: "), p.stderr)
        p = idmctl("--version")
        self.assertEqual(p.returncode, 0)
        self.assertIn(self.idmd.call("getServerInfo")["version"], p.stdout)

    def test_not_running(self):
        path = os.path.join(self.idmd.tmp, "no-such-socket")
        p = idmctl("status", socket_path=path)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr, f"idmctl: cannot connect to {path}: No such file or directory\n")
        p = idmctl("publisher", "list", env={"IDM_SOCKET": path})
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot connect", p.stderr)
        # a stopped daemon
        self.idmd.stop()
        p = self.run_ctl("status")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"^idmctl: cannot connect to .*: (No such file or directory|Connection refused)\n$")

    def test_unprivileged(self):
        self.idmd.open_to_others()
        probe = run_as(65534, 65534, [IDMCTL, "--version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            self.skipTest(f"nobody cannot run {IDMCTL}: {probe.stderr.strip()}")
        p = run_as(65534, 65534, [IDMCTL, "--socket", self.idmd.socket, "status"],
                   capture_output=True, text=True, timeout=60)
        # it says what it can: up, where, which version; and who would see the statistics
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        f = fields(p.stdout)
        self.assertEqual(f["Daemon"], f"up, on {self.idmd.socket}")
        self.assertEqual(f["Version"], f"{self.idmd.call('getServerInfo')['version']} (protocol 1)")
        self.assertEqual(f["Your role"], "anyone")
        self.assertEqual(f["Statistics"], "for administrators only: root (idmd's admin_group is off or does not exist)")
        self.assertNotIn("Uptime", f)
        # getStats was not even asked
        self.assertNotIn("getStats", self.idmd.call("getStats")["methods"])
        p = run_as(65534, 65534, [IDMCTL, "--socket", self.idmd.socket, "--json", "status"],
                   capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["serverInfo"]["role"], "anyone")
        self.assertNotIn("stats", json.loads(p.stdout))
        p = run_as(65534, 65534, [IDMCTL, "--socket", self.idmd.socket, "publisher", "create", "Evil"],
                   capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("(forbidden)", p.stderr)
        self.assertEqual(self.idmd.call("listPublishers")["items"], [])

    def test_publisher_token_file(self):
        """A publisher's operator runs the customer commands as the publisher, not as root."""
        p = self.create_publisher()
        self.idmd.call("registerCustomer", {"email": "zoe@example.com", "password": "correct horse 9",
                                            "publisherId": p["publisherId"], "locale": "en_GB", "country": "GB",
                                            "currency": "GBP"})
        self.idmd.open_to_others()
        probe = run_as(65534, 65534, [IDMCTL, "--version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            self.skipTest(f"nobody cannot run {IDMCTL}: {probe.stderr.strip()}")
        path = os.path.join(self.idmd.tmp, "token")
        with open(path, "w") as f:
            f.write(p["publisherToken"] + "\n")
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        argv = [IDMCTL, "--socket", self.idmd.socket, "customer", "list", "--publisher-token-file", path]
        r = run_as(65534, 65534, argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([row["E-MAIL"] for row in table(r.stdout)], ["zoe@example.com"])
        r = run_as(65534, 65534, argv[:4] + ["show", "zoe@example.com", "--publisher-token-file", path],
                   capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields(r.stdout)["E-mail"], "zoe@example.com")
        # A token file others can read is refused before anything is sent.
        os.chmod(path, 0o644)
        r = run_as(65534, 65534, argv, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("readable by others", r.stderr)


class IdmctlAdminGroup(IdmdTestCase):
    # Debian's "nogroup" (gid 65534) stands in for idm-admin, as in test_roles.py.
    CONFIG = "\n[daemon]\nadmin_group = nogroup\n"

    def status_as(self, gid):
        self.idmd.open_to_others()
        return run_as(65534, gid, [IDMCTL, "--socket", self.idmd.socket, "status"],
                      capture_output=True, text=True, timeout=60)

    def test_status_names_the_admin_group(self):
        probe = run_as(65534, 4321, [IDMCTL, "--version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            self.skipTest(f"nobody cannot run {IDMCTL}: {probe.stderr.strip()}")
        p = self.status_as(4321)
        self.assertEqual(p.returncode, 0, p.stderr)
        f = fields(p.stdout)
        self.assertEqual(f["Your role"], "anyone")
        self.assertEqual(f["Statistics"], "for administrators only: root and the members of group 'nogroup'")
        # a member sees everything
        p = self.status_as(65534)
        self.assertEqual(p.returncode, 0, p.stderr)
        f = fields(p.stdout)
        self.assertEqual(f["Your role"], "admin")
        self.assertNotIn("Statistics", f)
        self.assertIn("Uptime", f)


class FakeDaemon:
    """A one-connection socket server that answers the first request line with reply(request),
    then holds the connection open until the test ends: idmctl must stop on its own."""

    def __init__(self, reply):
        self.tmp = tempfile.TemporaryDirectory(prefix="idmctl-fake-")
        self.path = os.path.join(self.tmp.name, "socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.reply = reply
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:         # closed before idmctl connected
            return
        with conn:
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            out = self.reply(json.loads(buf.split(b"\n")[0]))
            if out == b"":      # close without a reply
                return
            try:
                if out is not None:
                    conn.sendall(out)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.done.wait()

    def close(self):
        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes a pending accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(60)
        self.tmp.cleanup()


class Transport(unittest.TestCase):
    def fake(self, reply):
        d = FakeDaemon(reply)
        self.addCleanup(d.close)
        return d

    def test_timeout(self):
        # The fake daemon reads the request and never answers, nor closes, until the test ends:
        # idmctl must give up by itself (subprocess.run's timeout would fail the test). Only a
        # lower bound on the time: it waited for its --timeout before giving up.
        d = self.fake(lambda req: None)
        start = time.monotonic()
        p = idmctl("--timeout", "0.5", "call", "getServerInfo", socket_path=d.path, timeout=120)
        elapsed = time.monotonic() - start
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertIn("no reply", p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertTrue(d.thread.is_alive())    # the fake still held the connection open

    def test_reply_for_another_id(self):
        d = self.fake(lambda req: json.dumps({"jsonrpc": "2.0", "id": req["id"] + 1, "result": {}}).encode() + b"\n")
        p = idmctl("call", "getServerInfo", socket_path=d.path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("invalid reply", p.stderr)

    def test_oversized_reply(self):
        d = self.fake(lambda req: b'{"jsonrpc": "2.0", "result": "' + b"x" * (2 * 1024 * 1024) + b'"}\n')
        p = idmctl("call", "getServerInfo", socket_path=d.path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("larger than", p.stderr)

    def test_closed_without_reply(self):
        d = self.fake(lambda req: b"")
        p = idmctl("--timeout", "10", "call", "getServerInfo", socket_path=d.path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("closed the connection", p.stderr)

    def test_retry_after_and_sanitized_message(self):
        err = {"code": 429, "message": "Too many\nrequests\x1b[31m",
               "data": {"reason": "rate_limited", "retryAfter": 30}}
        d = self.fake(lambda req: json.dumps({"jsonrpc": "2.0", "id": req["id"], "error": err}).encode() + b"\n")
        p = idmctl("call", "login", '{"email": "a@example.com"}', socket_path=d.path)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "idmctl: Too many?requests?[31m (rate_limited, retry after 30 s)\n")

    def test_request_framing(self):
        seen = []

        def reply(req):
            seen.append(req)
            return json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "ok"}).encode() + b"\n"
        d = self.fake(reply)
        p = idmctl("call", "getSingleSignOnByCustomer", '["s", "line\\nbreak"]', socket_path=d.path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, '"ok"\n')
        self.assertEqual(seen[0]["jsonrpc"], "2.0")
        self.assertEqual(seen[0]["method"], "getSingleSignOnByCustomer")
        self.assertEqual(seen[0]["params"], ["s", "line\nbreak"])



class Metrics(IdmctlCase):
    """idmctl metrics, read back by prometheus_client's OpenMetrics parser (an independent one):
    the counters and the latency histogram agree with getStats."""

    def test_openmetrics(self):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        self.idmd.call("getServerInfo")
        self.idmd.error("login", {"email": "a@example.com", "password": "wrong horse 1", "publisherId": "123456789"})
        text = self.ok("metrics")
        self.assertTrue(text.endswith("# EOF\n"))
        families = {f.name: f for f in text_string_to_metric_families(text)}
        stats = self.idmd.call("getStats")

        def value(family, name, **labels):
            for s in families[family].samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
            raise AssertionError(f"no sample {name} {labels}")

        calls = stats["methods"]["getServerInfo"]["calls"]
        # The scrape itself is counted after getStats answered: at least what was seen.
        self.assertGreaterEqual(value("idm_requests", "idm_requests_total", method="getServerInfo"), calls - 1)
        self.assertEqual(value("idm_request_errors", "idm_request_errors_total", method="login"), 1)
        self.assertEqual(families["idm_request_duration_seconds"].type, "histogram")
        self.assertEqual(value("idm_request_duration_seconds", "idm_request_duration_seconds_bucket",
                               method="login", le="+Inf"), 1)
        # The schema stamp, and on PostgreSQL the signing key, a record of the store there.
        self.assertEqual(value("idm_store_entries", "idm_store_entries", table="meta"), 2 if TEST_PG else 1)
        self.assertEqual(value("idm_outbox_depth", "idm_outbox_depth"), 0)
        self.assertEqual(value("idm_store_purges_pending", "idm_store_purges_pending"), 0)
        self.assertEqual(value("idm_store_reachable", "idm_store_reachable"), 1)
        self.assertEqual(value("idm_store_entries_estimated", "idm_store_entries_estimated"), 0)
        self.assertEqual(families["idm_store_conflict_reruns"].type, "counter")
        self.assertEqual(value("idm_store_conflict_reruns", "idm_store_conflict_reruns_total"),
                         stats["store"]["conflictReruns"])
        self.assertIn("idm_rate_limited", families)
        # Admin only, like getStats.
        self.idmd.open_to_others()
        p = run_as(65534, 65534, [IDMCTL, "--socket", self.idmd.socket, "metrics"], capture_output=True, text=True,
                   timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertRegex(p.stderr, r"^idmctl: .*forbidden")


if __name__ == "__main__":
    main()
