#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""README.md's tour, run as written: the shell blocks marked <!-- tour --> are taken from the
README itself and run in order, in one bash with `set -euo pipefail`, against a real idmd on a
temporary socket. The tour's own set-up line (outside the marked blocks) points IDM_SOCKET at
./run/socket and PATH at build/idmctl; here the same two variables point at the test's idmd and
the idmctl under test, so the commands run exactly as a reader pastes them."""

import os
import re
import subprocess
import tempfile
import unittest

from idmtest import IDMCTL, IdmdTestCase, main

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
README = os.path.join(SOURCE_ROOT, "README.md")
MARK = "<!-- tour -->"


def tour_blocks(text):
    """The fenced shell blocks that directly follow a MARK line (blank lines between are allowed)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not re.fullmatch(r"```(sh|bash|shell)", lines[i].strip()):
            raise AssertionError(f"README.md:{i + 1}: {MARK} is not followed by a ```sh block")
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise AssertionError("README.md: a tour block is not closed")
        blocks.append("\n".join(body) + "\n")
        i += 1
    return blocks


class Readme(unittest.TestCase):
    def test_blocks_found(self):
        with open(README) as f:
            text = f.read()
        blocks = tour_blocks(text)
        self.assertGreaterEqual(len(blocks), 3, "the tour's blocks are not marked")
        self.assertEqual(sum(l.strip() == MARK for l in text.splitlines()), len(blocks))
        # The README starts with the quick start of exactly two commands.
        quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        self.assertEqual([l.split("#")[0].strip() for l in quick.strip().splitlines()], ["./run.sh", "./test.sh"])
        # The tour's set-up line names the socket run.sh makes; the tour itself uses the variable.
        self.assertIn("export IDM_SOCKET=$PWD/run/socket", text)
        with open(os.path.join(SOURCE_ROOT, "run.sh")) as f:
            self.assertIn('sock="$PWD/run/socket"', f.read())
        for b in blocks:
            self.assertNotIn("build/", b, "tour blocks use idmctl from PATH, not a build directory")


class Tour(IdmdTestCase):
    def test_tour(self):
        with open(README) as f:
            blocks = tour_blocks(f.read())
        # xtrace shows on stderr which command failed.
        script = "set -euo pipefail -x\n" + "\n".join(blocks)
        with tempfile.TemporaryDirectory(prefix="idm-readme-") as cwd:
            env = dict(os.environ)
            env["IDM_SOCKET"] = self.idmd.socket
            env["PATH"] = os.path.dirname(os.path.abspath(IDMCTL)) + os.pathsep + env.get("PATH", "")
            p = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=240)
            self.assertEqual(p.returncode, 0,
                             f"the tour failed (exit {p.returncode}); stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
            # It did what it says: one publisher with one offer, and a customer that logged in.
            pubs = self.idmd.call("listPublishers")["items"]
            self.assertEqual([x["name"] for x in pubs], ["Acme TV"])
            offers = self.idmd.call("listOffers", {"publisherId": pubs[0]["publisherId"]})["items"]
            self.assertEqual([x["offerId"] for x in offers], ["R123123123_US"])
            self.assertIn('"active": true', p.stdout)
            # the offline check printed the verified claims, for the publisher's audience
            self.assertIn(f"'aud': '{pubs[0]['publisherId']}'", p.stdout)
            # Capture: asked at login (true), then answered (false); the export showed the answers;
            # the customer is gone afterwards.
            self.assertRegex(p.stdout, r"(?ms)^true\nfalse$")
            self.assertIn('"birthDate": "1990-04-12"', p.stdout)
            self.assertIn('"custom_1": "Drama"', p.stdout)
            self.assertEqual(self.idmd.call("listCustomers", {"publisherId": pubs[0]["publisherId"]})["items"], [])
            capture = self.idmd.call("getCaptureSettings", {"publisherId": pubs[0]["publisherId"]})["settings"]
            self.assertTrue(capture[1]["required"])


if __name__ == "__main__":
    main()
