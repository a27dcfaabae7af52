#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The replies idmd keeps made (getServerInfo per role, getJwks per state of the keys,
getPublisherConsents per publisher) and the pipelined requests of one connection: a change is
seen by the very next request (a key rotation, new consent versions, a publisher's new
definitions), on the same connection and on another, a kept reply is byte for byte what the
ordinary path sends, and pipelined requests of every kind are answered correctly and in order."""

import json

from idmtest import IdmdTestCase, main

NOBODY = 65534
TERMS = {"name": "terms", "label": "I accept the Terms of Service", "required": True}
NEWS = {"name": "news", "label": "Send me the newsletter \u00e9\u2028 \"q\" \\ /", "required": False,
        "enabledByDefault": True}


NOTIFICATION = object()     # an id for line(): none at all


def line(id, method, params=None):
    msg = {"jsonrpc": "2.0", "method": method}
    if id is not NOTIFICATION:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode() + b"\n"


class RawClient:
    """Reads reply lines as bytes, to compare them exactly."""

    def __init__(self, client):
        self.c = client

    def line(self):
        while b"\n" not in self.c.buf:
            chunk = self.c.sock.recv(65536)
            if not chunk:
                raise ConnectionError("idmd closed the connection")
            self.c.buf += chunk
        msg, self.c.buf = self.c.buf.split(b"\n", 1)
        return msg


class KeptReplies(IdmdTestCase):
    def setUp(self):
        super().setUp()
        p = self.idmd.call("createPublisher", {"name": "Kept", "allowedRedirectUris": ["https://a.example/cb"]})
        self.pub, self.token = p["publisherId"], p["publisherToken"]
        q = self.idmd.call("createPublisher", {"name": "Other", "allowedRedirectUris": ["https://b.example/cb"]})
        self.other, self.other_token = q["publisherId"], q["publisherToken"]

    def kids(self, c):
        return [k["kid"] for k in c.call("getJwks")["keys"]]

    def test_jwks_follows_rotation_at_once(self):
        with self.idmd.client() as c, self.idmd.client() as other:
            first = self.kids(c)
            self.assertEqual(self.kids(c), first)       # kept: the same again
            self.assertEqual(self.kids(other), first)
            kid = c.call("rotateSigningKey")["kid"]
            # the next request, on the same connection and on another
            self.assertEqual(sorted(self.kids(c)), sorted(first + [kid]))
            self.assertEqual(sorted(self.kids(other)), sorted(first + [kid]))
            # pipelined behind the rotation on one line each: the getJwks after it sees it
            c.send_raw(line(1, "getJwks") + line(2, "rotateSigningKey") + line(3, "getJwks"))
            before, rotated, after = c.recv_line(), c.recv_line(), c.recv_line()
            self.assertEqual([r["id"] for r in (before, rotated, after)], [1, 2, 3])
            newer = rotated["result"]["kid"]
            self.assertNotIn(newer, [k["kid"] for k in before["result"]["keys"]])
            self.assertIn(newer, [k["kid"] for k in after["result"]["keys"]])
            # deleting the retired keys shows at once too
            c.call("rotateSigningKey", {"revokePrevious": True})
            only = self.kids(other)
            self.assertEqual(len(only), 1)
            self.assertEqual(only, [self.idmd.call("getStats")["keys"]["active"]])

    def test_consents_follow_changes_at_once(self):
        get = {"publisherId": self.pub}
        with self.idmd.client() as c, self.idmd.client() as other:
            self.assertEqual(c.call("getPublisherConsents", get)["consents"], [])
            self.assertEqual(c.call("getPublisherConsents", get)["consents"], [])
            self.assertEqual(other.call("getPublisherConsents", {"publisherToken": self.token})["consents"], [])
            self.assertEqual(other.call("getPublisherConsents", {"publisherId": self.other})["consents"], [])

            c.call("setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS]})
            for who in (c, other):
                got = who.call("getPublisherConsents", get)["consents"]
                self.assertEqual([(x["name"], x["version"]) for x in got], [("terms", 1)])
                got = who.call("getPublisherConsents", {"publisherToken": self.token})["consents"]
                self.assertEqual([(x["name"], x["version"]) for x in got], [("terms", 1)])
            # the other publisher's are its own
            self.assertEqual(other.call("getPublisherConsents", {"publisherId": self.other})["consents"], [])

            # a new version, pipelined between two reads on one connection
            c.send_raw(line(1, "getPublisherConsents", get) +
                       line(2, "setPublisherConsents", {"publisherToken": self.token,
                                                        "consents": [dict(TERMS, label="New terms"), NEWS]}) +
                       line(3, "getPublisherConsents", get))
            replies = [c.recv_line() for _ in range(3)]
            self.assertEqual([r["id"] for r in replies], [1, 2, 3])
            self.assertEqual([x["version"] for x in replies[0]["result"]["consents"]], [1])
            self.assertEqual(replies[2]["result"], replies[1]["result"])
            self.assertEqual([(x["name"], x["version"]) for x in replies[2]["result"]["consents"]],
                             [("terms", 2), ("news", 1)])
            self.assertEqual(other.call("getPublisherConsents", get), replies[1]["result"])
            # a write that is not about consents changes nothing shown, and is no trouble either
            c.call("updatePublisher", {"publisherId": self.pub, "name": "Renamed"})
            self.assertEqual(other.call("getPublisherConsents", get), replies[1]["result"])

    def test_kept_consents_are_what_the_store_path_sends(self):
        """By offerId the reply is made from the store every time; by publisherId it is kept:
        the two lines are the same bytes."""
        self.idmd.call("setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS, NEWS]})
        self.idmd.call("addOffer", {"publisherToken": self.token, "offerId": "S_MONTHLY"})
        with self.idmd.client() as c:
            raw = RawClient(c)
            for id in (7, 0, -1, -2 ** 63, 2 ** 63 - 1, "x\u00e9\"\\/\u2028", None):
                c.send_raw(line(id, "getPublisherConsents", {"offerId": "S_MONTHLY"}) +
                           line(id, "getPublisherConsents", {"publisherId": self.pub}) +
                           line(id, "getPublisherConsents", {"publisherId": self.pub}) +
                           line(id, "getPublisherConsents", {"publisherToken": self.token}))
                lines = [raw.line() for _ in range(4)]
                self.assertEqual(len(set(lines)), 1, lines)
                self.assertEqual(json.loads(lines[0])["id"], id)

    def test_server_info_per_role(self):
        admin = self.idmd.call("getServerInfo")
        self.assertEqual(admin["role"], "admin")
        nobody = self.idmd.call_as(NOBODY, [["getServerInfo", {}], ["getServerInfo", {}]])
        self.assertEqual([r["result"]["role"] for r in nobody], ["anyone", "anyone"])
        self.assertEqual(self.idmd.call("getServerInfo"), admin)
        self.assertEqual(nobody[0]["result"]["methods"], admin["methods"])

    def test_pipelined_requests_answered_in_order(self):
        """Every kind of request in one write: kept replies, store reads, a write, errors,
        notifications and a batch; each answered as it is alone, in request order."""
        self.idmd.call("setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS]})
        requests = [
            (1, "getServerInfo", None),
            ("two", "getJwks", None),
            (NOTIFICATION, "getJwks", None),
            (3, "getPublisherConsents", {"publisherId": self.pub}),
            (4, "noSuchMethod", None),
            (5, "getPublisher", {"publisherId": self.pub}),
            (None, "getServerInfo", None),                              # id null
            (6, "getPublisherConsents", {"publisherId": "999999999"}),
            (7, "setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS, NEWS]}),
            (8, "getPublisherConsents", {"publisherId": self.pub}),
            (9, "getJwks", {"unknown": 1}),
            ("\u00e9\u0001", "getServerInfo", None),
        ]
        alone = {}
        with self.idmd.client() as c:
            for id, method, params in requests:
                if id is not NOTIFICATION and method != "setPublisherConsents":
                    c.send_raw(line(id, method, params))
                    alone[json.dumps(id)] = c.recv_line()
            # the write already happened alone: set the first definitions again for the run
            c.call("setPublisherConsents", {"publisherToken": self.token, "consents": [TERMS]})

        batch = [{"jsonrpc": "2.0", "id": 100 + i, "method": "getJwks"} for i in range(3)]
        batch.insert(1, {"jsonrpc": "2.0", "method": "getServerInfo"})
        data = b"".join(line(id, method, params) for id, method, params in requests)
        data += json.dumps(batch).encode() + b"\n"
        data += line(10, "getPublisherConsents", {"publisherId": self.pub}) * 50
        with self.idmd.client() as c:
            c.send_raw(data)
            replies = [c.recv_line() for _ in range(len(requests) - 1 + 1 + 50)]
        expected_ids = [id for id, _, _ in requests if id is not NOTIFICATION]
        self.assertEqual([r["id"] for r in replies[:len(expected_ids)]], expected_ids)
        by_id = {json.dumps(r["id"]): r for r in replies[:len(expected_ids)]}
        for id, method, params in requests:
            if id is NOTIFICATION:
                continue
            got = by_id[json.dumps(id)]
            if id == 7:
                self.assertEqual(len(got["result"]["consents"]), 2)
            elif id == 8:           # after the write on the same line stream
                self.assertEqual(got["result"], by_id["7"]["result"])
            elif id == 3:
                self.assertEqual(len(got["result"]["consents"]), 1)
            else:
                self.assertEqual(got, alone[json.dumps(id)], method)
        batch_reply = replies[len(expected_ids)]
        self.assertEqual([r["id"] for r in batch_reply], [100, 101, 102])
        self.assertTrue(all(r["result"] == alone['"two"']["result"] for r in batch_reply))
        self.assertEqual([r["id"] for r in replies[len(expected_ids) + 1:]], [10] * 50)
        self.assertTrue(all(r["result"] == by_id["7"]["result"] for r in replies[len(expected_ids) + 1:]))


if __name__ == "__main__":
    main()
