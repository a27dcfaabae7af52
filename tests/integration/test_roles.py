#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Roles come from SO_PEERCRED: a client running as an unprivileged uid (setpriv) is "anyone"
and gets 403 from admin methods; root is admin."""

from idmtest import IdmdTestCase, main

NOBODY = 65534


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


if __name__ == "__main__":
    main()
