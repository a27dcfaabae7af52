#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""idmctl consents show|set through a real idmd and the real idmctl: set from a file (an array, or
{"consents": [...]}, or standard input) then show as text and as JSON, checked against what idmd
itself says; files that cannot be read or are not JSON (the message names the file, line and
column) and refusals, each one "idmctl: " line with a non-zero exit and nothing changed; and a
publisher's operator with --publisher-token-file, as an unprivileged uid, who can set its own
consents but not another publisher's (403, exit 1). Then idmctl capture show|set the same way."""

import json
import os

from idmtest import IDMCTL, main, run_as
from test_idmctl import IdmctlCase, fields

NOBODY = 65534

TERMS = {"name": "terms", "label": "I accept the Terms of Service", "required": True,
         "value": "https://acme.example/terms"}
NEWS = {"name": "news", "label": "Send me the newsletter", "required": False, "enabledByDefault": True}


def blocks(stdout):
    """The "Key: value" blocks of consents show, one dict per consent."""
    return [fields(b) for b in stdout.strip("\n").split("\n\n")]


class IdmctlPublisherList(IdmctlCase):
    """What the consents and capture tests share: a publisher, idmctl run on the test's idmd."""

    def setUp(self):
        super().setUp()
        p = self.create_publisher()
        self.pub, self.token = p["publisherId"], p["publisherToken"]

    def fails(self, code, *args, **kw):
        p = super().fails(code, *args, **kw)
        self.assertEqual(p.stdout, "")
        return p

    def write(self, name, content):
        path = os.path.join(self.idmd.tmp, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=2))
        return path

    def stored(self, pub=None):
        return self.idmd.call("getPublisherConsents", {"publisherId": pub or self.pub})["consents"]

class IdmctlConsents(IdmctlPublisherList):
    def test_set_then_show(self):
        self.assertEqual(self.ok("consents", "show", "--publisher", self.pub), "No consents.\n")

        # an array in a file; set shows what was stored
        path = self.write("consents.json", [TERMS, NEWS])
        out = self.ok("consents", "set", "--file", path, "--publisher", self.pub)
        stored = self.stored()
        self.assertEqual([c["name"] for c in stored], ["terms", "news"])
        self.assertEqual(out, self.ok("consents", "show", "--publisher", self.pub))
        b = blocks(out)
        self.assertEqual(b[0], {"Consent": "terms", "Label": "I accept the Terms of Service", "Version": "1",
                                "Required": "yes", "Enabled by default": "no", "Value": "https://acme.example/terms"})
        self.assertEqual(b[1], {"Consent": "news", "Label": "Send me the newsletter", "Version": "1",
                                "Required": "no", "Enabled by default": "yes", "Value": "-"})

        # --json: the daemon's result as it is
        shown = json.loads(self.ok("--json", "consents", "show", "--publisher", self.pub))
        self.assertEqual(shown, {"consents": stored})

        # show --json feeds set as it is (an object {"consents": [...]}, on standard input):
        # nothing changed, so no new version
        out = self.ok("consents", "set", "--file", "-", "--publisher", self.pub, input=json.dumps(shown))
        self.assertEqual(self.stored(), stored)
        # a changed label makes version 2; set --json prints the result
        changed = json.loads(self.ok("consents", "set", "--json", "--file", "-", "--publisher", self.pub,
                                     input=json.dumps({"consents": [dict(TERMS, label="New terms")]})))
        self.assertEqual(changed, {"consents": self.stored()})
        self.assertEqual([(c["name"], c["version"]) for c in changed["consents"]], [("terms", 2)])
        # an empty list removes them all
        self.assertEqual(self.ok("consents", "set", "--file", self.write("none.json", "[]"), "--publisher",
                                 self.pub), "No consents.\n")
        self.assertEqual(self.stored(), [])

    def test_bad_files(self):
        self.ok("consents", "set", "--file", self.write("c.json", [TERMS]), "--publisher", self.pub)
        before = self.stored()

        missing = os.path.join(self.idmd.tmp, "missing.json")
        p = self.fails(1, "consents", "set", "--file", missing, "--publisher", self.pub)
        self.assertEqual(p.stderr, f"idmctl: cannot open {missing}: No such file or directory\n")
        p = self.fails(1, "consents", "set", "--file", self.idmd.tmp, "--publisher", self.pub)
        self.assertEqual(p.stderr, f"idmctl: cannot read {self.idmd.tmp}: Is a directory\n")

        # not JSON: the file, the line and the column
        bad = self.write("bad.json", '[\n  {"name": "terms",\n   "label": }\n]\n')
        p = self.fails(1, "consents", "set", "--file", bad, "--publisher", self.pub)
        self.assertRegex(p.stderr, r"^idmctl: cannot parse " + bad + r": .+ \(line 3, column \d+\)\n$")
        p = self.fails(1, "consents", "set", "--file", "-", "--publisher", self.pub, input="[1,")
        self.assertRegex(p.stderr, r"^idmctl: cannot parse standard input: .+ \(line 1, column \d+\)\n$")
        dup = self.write("dup.json", '{"consents": [], "consents": []}')
        p = self.fails(1, "consents", "set", "--file", dup, "--publisher", self.pub)
        self.assertIn("duplicate", p.stderr)

        # JSON, but not a list of consents
        for content, expect in (('{"consent": []}', "unexpected member 'consent'"),
                                ('{"consents": [], "publisherId": "1"}', "unexpected member 'publisherId'"),
                                ('{"consents": {}}', "expected a JSON array"),
                                ('{}', "expected a JSON array")):
            p = self.fails(1, "consents", "set", "--file", self.write("shape.json", content), "--publisher", self.pub)
            self.assertIn(expect, p.stderr)
            self.assertEqual(p.stderr.count("\n"), 1, p.stderr)

        # the daemon's refusal of a consent: its reason, param and index
        p = self.fails(1, "consents", "set", "--file", self.write("wrong.json", [{"name": "terms"}]),
                       "--publisher", self.pub)
        self.assertIn("(invalid_params, param 'consents')", p.stderr)
        self.assertEqual(self.stored(), before)

        # usage errors: exit 2, before any file is read
        for args in (["consents", "set", "--publisher", self.pub],
                     ["consents", "set", "--file", missing],
                     ["consents", "set", "--file=", "--publisher", self.pub],
                     ["consents", "show"],
                     ["consents", "show", "--publisher", self.pub, "--file", bad],
                     ["consents", "show", "--publisher", self.pub, "extra"],
                     ["consents"],
                     ["consents", "frobnicate"]):
            self.fails(2, *args)
        p = self.fails(2, "consents", "set", "--publisher", self.pub)
        self.assertEqual(p.stderr, "idmctl: --file FILE is required\n"
                                   "Usage: idmctl [OPTIONS] consents set --file FILE --publisher ID\n")
        self.assertEqual(self.stored(), before)

    def test_publisher_token_file(self):
        """A publisher's operator, not root, sets and shows its own consents by its token file,
        and cannot touch another publisher's."""
        other = self.create_publisher(name="Other")
        self.idmd.call("setPublisherConsents", {"publisherId": other["publisherId"], "consents": [NEWS]})
        self.idmd.open_to_others()
        probe = run_as(NOBODY, NOBODY, [IDMCTL, "--version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            self.skipTest(f"nobody cannot run {IDMCTL}: {probe.stderr.strip()}")
        token_file = self.write("token", self.token + "\n")
        consents = self.write("consents.json", {"consents": [TERMS]})
        for path in (token_file, consents):
            os.chown(path, NOBODY, NOBODY)
        os.chmod(token_file, 0o600)

        def as_nobody(*args, **kw):
            return run_as(NOBODY, NOBODY, [IDMCTL, "--socket", self.idmd.socket] + list(args),
                          capture_output=True, text=True, timeout=60, **kw)

        r = as_nobody("consents", "set", "--file", consents, "--publisher-token-file", token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([c["name"] for c in self.stored()], ["terms"])
        # show needs no publisher id: the token names the publisher
        r = as_nobody("consents", "show", "--publisher-token-file", token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([b["Consent"] for b in blocks(r.stdout)], ["terms"])
        r = as_nobody("--json", "consents", "show", "--publisher-token-file", token_file, "--publisher", self.pub)
        self.assertEqual(json.loads(r.stdout), {"consents": self.stored()})

        # another publisher's: 403 from the daemon, one idmctl: line, exit 1, nothing changed
        for verb in (["set", "--file", consents], ["show"]):
            r = as_nobody("consents", *verb, "--publisher-token-file", token_file,
                          "--publisher", other["publisherId"])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stdout, "")
            self.assertRegex(r.stderr, r"^idmctl: .*\(forbidden\)\n$")
        self.assertEqual([c["name"] for c in self.stored(other["publisherId"])], ["news"])
        # without a token, a peer that is not an admin may read (the consents are public) but not set
        r = as_nobody("consents", "show", "--publisher", other["publisherId"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([b["Consent"] for b in blocks(r.stdout)], ["news"])
        r = as_nobody("consents", "set", "--file", consents, "--publisher", other["publisherId"])
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^idmctl: .*\(forbidden\)\n$")
        self.assertEqual([c["name"] for c in self.stored(other["publisherId"])], ["news"])
        # a wrong token
        with open(token_file, "w") as f:
            f.write("x" * 48 + "\n")
        r = as_nobody("consents", "show", "--publisher-token-file", token_file)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^idmctl: .*\(invalid_token\)\n$")


class IdmctlCapture(IdmctlPublisherList):
    SETTINGS = [{"key": "birthDate", "enabled": True, "required": True},
                {"key": "custom_1", "enabled": True, "required": False, "question": "Favourite genre?",
                 "value": "Drama;Sport"},
                {"key": "custom_2", "enabled": True, "required": False, "question": "Anything else?"}]

    def capture(self, pub=None):
        return self.idmd.call("getCaptureSettings", {"publisherId": pub or self.pub})["settings"]

    def test_capture_set_then_show(self):
        shown = blocks(self.ok("capture", "show", "--publisher", self.pub))
        self.assertEqual([b["Field"] for b in shown], ["firstNameLastName", "birthDate", "companyName",
                                                        "phoneNumber", "address"])
        self.assertTrue(all(b["Enabled"] == "no" for b in shown))
        path = self.write("capture.json", {"settings": self.SETTINGS})
        out = blocks(self.ok("capture", "set", "--file", path, "--publisher", self.pub))
        by_field = {b["Field"]: b for b in out}
        self.assertEqual(by_field["birthDate"], {"Field": "birthDate", "Enabled": "yes", "Required": "yes"})
        self.assertEqual(by_field["custom_1"]["Options"], "Drama;Sport")
        self.assertEqual(by_field["custom_2"]["Options"], "(free text)")
        self.assertEqual(by_field["custom_2"]["Question"], "Anything else?")
        self.assertEqual(blocks(self.ok("capture", "show", "--publisher", self.pub)), out)
        # --json output can be set again unchanged.
        doc = self.ok("--json", "capture", "show", "--publisher", self.pub)
        self.assertEqual(json.loads(doc)["settings"], self.capture())
        self.ok("capture", "set", "--file", "-", "--publisher", self.pub, input=doc)
        self.assertEqual(json.loads(doc)["settings"], self.capture())

    def test_capture_refusals_change_nothing(self):
        self.ok("capture", "set", "--file", self.write("c.json", self.SETTINGS), "--publisher", self.pub)
        before = self.capture()
        p = self.fails(1, "capture", "set", "--file", self.write("bad.json", [{"key": "shoeSize", "enabled": True}]),
                       "--publisher", self.pub)
        self.assertIn("invalid_value", p.stderr)
        self.fails(1, "capture", "set", "--file", self.write("broken.json", "[{"), "--publisher", self.pub)
        self.fails(1, "capture", "set", "--file", self.write("obj.json", {"consents": []}), "--publisher", self.pub)
        self.assertEqual(self.capture(), before)

    def test_capture_as_publisher_operator(self):
        other = self.create_publisher(name="Other")
        token_file = self.write("token", self.token)
        os.chmod(token_file, 0o600)
        os.chown(token_file, NOBODY, NOBODY)
        self.idmd.open_to_others()
        path = self.write("c.json", self.SETTINGS)
        os.chmod(path, 0o644)
        argv = [IDMCTL, "--socket", self.idmd.socket, "capture", "set", "--file", path,
                "--publisher-token-file", token_file]
        p = run_as(NOBODY, NOBODY, argv, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(self.capture()[1]["enabled"])
        # The same token naming the other publisher: 403, and the other's settings unchanged.
        p = run_as(NOBODY, NOBODY, argv + ["--publisher", other["publisherId"]], capture_output=True, text=True,
                   timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertRegex(p.stderr, r"^idmctl: .*forbidden")
        self.assertFalse(any(s["enabled"] for s in self.capture(other["publisherId"])))
        # $IDM_PUBLISHER_TOKEN_FILE stands in for the option.
        env = dict(os.environ, IDM_PUBLISHER_TOKEN_FILE=token_file)
        p = run_as(NOBODY, NOBODY, [IDMCTL, "--socket", self.idmd.socket, "--json", "capture", "show"],
                   capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["settings"], self.capture())


if __name__ == "__main__":
    main()
