#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Roles come from SO_PEERCRED: a client running as an unprivileged uid (setpriv) is "anyone"
and gets 403 from admin methods; root is admin."""

import json
import os
import subprocess
import sys

from idmtest import IdmdTestCase, main, run_as

CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rwb")
out = []
for i, line in enumerate(sys.stdin):
    method, params = json.loads(line)
    f.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\n")
    f.flush()
    out.append(json.loads(f.readline()))
print(json.dumps(out))
"""


class NobodyClient:
    def call_as_nobody(self, calls, groups=None, gid=65534):
        # the temporary directory is private to root; let the unprivileged client reach the socket
        for d in (self.idmd.tmp, os.path.dirname(self.idmd.socket)):
            os.chmod(d, 0o755)
        stdin = "".join(json.dumps(c) + "\n" for c in calls)
        p = run_as(65534, gid, [sys.executable, "-c", CLIENT, self.idmd.socket], input=stdin,
                   capture_output=True, text=True, timeout=60, groups=groups)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

class Roles(NobodyClient, IdmdTestCase):
    def test_unprivileged_peer(self):
        pub = self.create_publisher()
        replies = self.call_as_nobody([
            ["getServerInfo", {}],
            ["getStats", {}],
            ["createPublisher", {"name": "Evil"}],
            ["listPublishers", {}],
            ["rotatePublisherToken", {"publisherId": pub["publisherId"]}],
            ["addOffer", {"publisherId": pub["publisherId"], "offerId": "X"}],
            ["addOffer", {"publisherToken": pub["publisherToken"], "offerId": "Y"}],
        ])
        self.assertEqual(replies[0]["result"]["role"], "anyone")
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


class AdminGroup(NobodyClient, IdmdTestCase):
    # Debian's "nogroup" (gid 65534) stands in for idm-admin: no change to the host's groups.
    CONFIG = "\n[daemon]\nadmin_group = nogroup\n"

    def test_primary_group_member_is_admin(self):
        replies = self.call_as_nobody([["getServerInfo", {}], ["createPublisher", {"name": "By group"}]])
        self.assertEqual(replies[0]["result"]["role"], "admin")
        self.assertIn("publisherId", replies[1]["result"])

    def test_supplementary_group_member_is_admin(self):
        replies = self.call_as_nobody([["getServerInfo", {}]], groups="65534", gid=4321)
        self.assertEqual(replies[0]["result"]["role"], "admin")
        replies = self.call_as_nobody([["getServerInfo", {}]], gid=4321)
        self.assertEqual(replies[0]["result"]["role"], "anyone")


if __name__ == "__main__":
    main()
