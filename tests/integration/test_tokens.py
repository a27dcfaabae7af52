#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Tokens through the real socket: the JWKS and signing-key rotation, access JWTs checked with
an Ed25519 implementation that is not ours, refresh-token rotation (the grace window for
concurrent users of one token from the same peer, family revocation on a re-use from another
peer or after the window), expiry, revokeToken (RFC 7009), logoutAll, introspectToken
(RFC 7662) of every kind of token and of garbage, and that no token is stored in plaintext."""

import base64
import json
import os
import socket
import time

from idmtest import IdmdTestCase, main

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover
    Ed25519PublicKey = None

PASSWORD = "correct horse 9"
NOBODY = 65534

GARBAGE = ["garbage", "", "a.b.c", "...", "eyJhbGciOiJub25lIn0.e30.", "x" * 500, "family:abc",
           "customer:1:abc", "0" * 64]

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    h, c, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(c)), b64url_decode(s), f"{h}.{c}".encode()


def request_line(method, params, id=1):
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode() + b"\n"


def concurrent_calls(path, method, params, n):
    """Sends the same request on n connections before reading any reply (so idmd has them all
    queued at once) and returns the n replies."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(path)
            socks.append(s)
        line = request_line(method, params)
        for s in socks:
            s.sendall(line)
        replies = []
        for s in socks:
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            replies.append(json.loads(buf))
        return replies
    finally:
        for s in socks:
            s.close()


class TokenTestCase(IdmdTestCase):
    def setUp(self):
        super().setUp()
        self.pub = self.create_publisher()["publisherId"]
        self.customers = 0

    def register(self, email=None):
        self.customers += 1
        email = email or f"user{self.customers}@example.com"
        return self.idmd.call("registerCustomer", {"email": email, "password": PASSWORD, "publisherId": self.pub,
                                                   "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def login(self, email="user1@example.com"):
        return self.idmd.call("login", {"email": email, "password": PASSWORD, "publisherId": self.pub})

    def introspect(self, token):
        return self.idmd.call("introspectToken", {"token": token})

    def assertInactive(self, token):
        self.assertEqual(self.introspect(token), {"active": False})

    def call_as_nobody(self, method, params):
        return self.idmd.call_as(NOBODY, [[method, params]])[0]


class Keys(TokenTestCase):
    def jwks(self):
        return {k["kid"]: k for k in self.idmd.call("getJwks")["keys"]}

    def test_jwks(self):
        keys = self.jwks()
        self.assertEqual(len(keys), 1)
        for kid, k in keys.items():
            self.assertEqual((k["kty"], k["crv"], k["alg"], k["use"]), ("OKP", "Ed25519", "EdDSA", "sig"))
            self.assertEqual(len(b64url_decode(k["x"])), 32)
            self.assertNotIn("d", k)  # never the private part
            self.assertRegex(kid, r"^[A-Za-z0-9_-]{16}$")

    def test_rotate_signing_key(self):
        r = self.register()
        old = set(self.jwks())
        kid = self.idmd.call("rotateSigningKey")["kid"]
        self.assertNotIn(kid, old)
        keys = self.jwks()
        self.assertEqual(set(keys), old | {kid})  # the old key still verifies
        # the JWT signed by the old key keeps working; new ones are signed by the new key
        self.assertTrue(self.introspect(r["jwt"])["active"])
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": r["jwt"]})["customerId"], r["customerId"])
        fresh = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        self.assertEqual(jwt_parts(fresh["jwt"])[0]["kid"], kid)
        self.assertNotEqual(jwt_parts(r["jwt"])[0]["kid"], kid)
        self.assertEqual(self.idmd.call("getStats")["keys"]["active"], kid)
        # rotation survives a restart
        self.idmd.stop()
        self.idmd.start()
        self.assertEqual(set(self.jwks()), old | {kid})
        self.assertTrue(self.introspect(fresh["jwt"])["active"])

    def test_rotate_needs_admin(self):
        reply = self.call_as_nobody("rotateSigningKey", {})
        self.assertError(reply["error"], 403, "forbidden")
        self.assertEqual(len(self.jwks()), 1)
        # the public methods are open to anyone
        reply = self.call_as_nobody("getJwks", {})
        self.assertEqual(len(reply["result"]["keys"]), 1)
        reply = self.call_as_nobody("introspectToken", {"token": "garbage"})
        self.assertEqual(reply["result"], {"active": False})

    def test_jwt_verifies_with_another_implementation(self):
        if Ed25519PublicKey is None:
            self.skipTest("python3-cryptography is not installed")
        r = self.register()
        header, claims, sig, signing_input = jwt_parts(r["jwt"])
        self.assertEqual(header, {"alg": "EdDSA", "typ": "at+jwt", "kid": header["kid"]})
        key = self.jwks()[header["kid"]]
        Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"])).verify(sig, signing_input)
        with self.assertRaises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"])).verify(sig, signing_input + b"x")
        self.assertEqual(claims["iss"], "idmd")
        self.assertEqual(claims["sub"], r["customerId"])
        self.assertEqual(claims["customerId"], r["customerId"])
        self.assertEqual(claims["aud"], self.pub)
        self.assertEqual(claims["publisherId"], self.pub)
        self.assertEqual(claims["exp"] - claims["iat"], 15 * 60)
        self.assertEqual(claims["nbf"], claims["iat"])
        self.assertLessEqual(abs(claims["iat"] - time.time()), 60)
        self.assertRegex(claims["jti"], r"^[A-Za-z0-9_-]{22,}$")
        self.assertRegex(claims["sid"], r"^[A-Za-z0-9_-]{22}$")


class Garbage(TokenTestCase):
    def test_introspect_garbage(self):
        for g in GARBAGE:
            self.assertInactive(g)

    def test_revoke_garbage(self):
        for g in GARBAGE:
            self.assertEqual(self.idmd.call("revokeToken", {"token": g}), {})

    def test_refresh_garbage(self):
        for g in GARBAGE[:-3]:
            self.assertError(self.idmd.error("refreshToken", {"refreshToken": g}), 401, "invalid_token")
        self.assertError(self.idmd.error("refreshToken", {}), -32602)
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": 5}), -32602)
        self.assertError(self.idmd.error("logoutAll", {"jwt": "garbage"}), 401, "invalid_token")

    def test_methods_listed(self):
        methods = self.idmd.call("getServerInfo")["methods"]
        for m in ("refreshToken", "revokeToken", "logoutAll", "introspectToken", "getJwks", "rotateSigningKey"):
            self.assertIn(m, methods)


class Sessions(TokenTestCase):
    def test_introspect_each_kind(self):
        r = self.register()
        want = {"active", "sub", "exp", "iat", "iss", "aud", "token_type", "customerId", "publisherId"}
        for token, kind in ((r["jwt"], "access_token"), (r["refreshToken"], "refresh_token"),
                            (r["customerToken"], "customer_token")):
            i = self.introspect(token)
            self.assertIs(i["active"], True)
            self.assertEqual(i["token_type"], kind)
            self.assertEqual((i["sub"], i["customerId"]), (r["customerId"], r["customerId"]))
            self.assertEqual((i["aud"], i["publisherId"]), (self.pub, self.pub))
            self.assertEqual(i["iss"], "idmd")
            self.assertGreater(i["exp"], time.time())
            self.assertLessEqual(i["iat"], time.time() + 1)
            self.assertTrue(want <= set(i), i)
        self.assertIn("jti", self.introspect(r["jwt"]))
        i = self.introspect(r["refreshToken"])
        self.assertAlmostEqual(i["exp"] - i["iat"], 100 * 86400, delta=1)
        i = self.introspect(r["customerToken"])
        self.assertAlmostEqual(i["exp"] - i["iat"], 14 * 86400, delta=1)

    def test_refresh_rotates(self):
        r = self.register()
        n1 = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        self.assertEqual(set(n1), {"jwt", "refreshToken"})
        self.assertNotEqual(n1["refreshToken"], r["refreshToken"])
        self.assertRegex(n1["refreshToken"], r"^[A-Za-z0-9_-]{43}$")
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": n1["jwt"]})["customerId"], r["customerId"])
        self.assertInactive(r["refreshToken"])  # used up
        self.assertEqual(self.introspect(n1["refreshToken"])["token_type"], "refresh_token")
        n2 = self.idmd.call("refreshToken", {"refreshToken": n1["refreshToken"]})
        self.assertTrue(self.introspect(n2["jwt"])["active"])
        self.assertTrue(self.introspect(r["customerToken"])["active"])

    def test_concurrent_refresh_same_peer(self):
        r = self.register()
        replies = concurrent_calls(self.idmd.socket, "refreshToken", {"refreshToken": r["refreshToken"]}, 8)
        tokens = {rep["result"]["refreshToken"] for rep in replies}
        jwts = {rep["result"]["jwt"] for rep in replies}
        # one successor for all (never two minted), each caller its own working JWT
        self.assertEqual(len(tokens), 1, replies)
        self.assertEqual(len(jwts), 8)
        successor = tokens.pop()
        for jwt in jwts:
            self.assertTrue(self.introspect(jwt)["active"])
        self.assertTrue(self.introspect(successor)["active"])
        self.idmd.call("refreshToken", {"refreshToken": successor})

    def test_reuse_from_other_peer_revokes_family(self):
        r = self.register()
        other = self.login()
        n1 = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        reply = self.call_as_nobody("refreshToken", {"refreshToken": r["refreshToken"]})
        self.assertError(reply["error"], 401, "invalid_token")
        for t in (n1["refreshToken"], n1["jwt"], r["jwt"], r["customerToken"]):
            self.assertInactive(t)
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": n1["refreshToken"]}), 401, "invalid_token")
        self.assertError(self.idmd.error("getCustomer", {"jwt": n1["jwt"]}), 401, "invalid_token")
        # the customer's other login is not touched
        self.assertTrue(self.introspect(other["jwt"])["active"])
        self.idmd.call("refreshToken", {"refreshToken": other["refreshToken"]})

    def test_revoke_token(self):
        r = self.register()
        a = self.login()
        b = self.login()
        self.assertEqual(self.idmd.call("revokeToken", {"token": r["refreshToken"]}), {})
        for t in (r["refreshToken"], r["jwt"], r["customerToken"]):
            self.assertInactive(t)
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": r["refreshToken"]}), 401, "invalid_token")
        self.assertEqual(self.idmd.call("revokeToken", {"token": r["refreshToken"]}), {})  # again: still {}
        self.assertEqual(self.idmd.call("revokeToken", {"token": a["customerToken"]}), {})
        self.assertInactive(a["refreshToken"])
        self.assertEqual(self.idmd.call("revokeToken", {"token": b["jwt"]}), {})
        self.assertInactive(b["refreshToken"])

    def test_logout_all(self):
        r = self.register()
        sessions = [r, self.login(), self.login()]
        other = self.register()
        self.assertEqual(self.idmd.call("logoutAll", {"jwt": r["jwt"]}), {"revoked": 3})
        for s in sessions:
            for t in (s["jwt"], s["refreshToken"], s["customerToken"]):
                self.assertInactive(t)
        self.assertTrue(self.introspect(other["jwt"])["active"])
        self.assertError(self.idmd.error("logoutAll", {"jwt": r["jwt"]}), 401, "invalid_token")
        fresh = self.login()
        self.assertEqual(self.idmd.call("logoutAll", {"jwt": fresh["jwt"]}), {"revoked": 1})

    def test_nothing_in_plaintext(self):
        r = self.register()
        n1 = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        n1b = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})  # grace: sealed successor
        self.assertEqual(n1["refreshToken"], n1b["refreshToken"])
        l2 = self.login()
        self.idmd.call("revokeToken", {"token": l2["refreshToken"]})
        tokens = [r["jwt"], r["refreshToken"], r["customerToken"], n1["jwt"], n1["refreshToken"], n1b["jwt"],
                  l2["jwt"], l2["refreshToken"], l2["customerToken"]]
        self.idmd.stop()
        data = self.idmd.stored_bytes()
        for t in tokens:
            self.assertNotIn(t.encode(), data)
            self.assertNotIn(t[:20].encode(), data)


class ShortGrace(TokenTestCase):
    GRACE = 5  # seconds: the in-window re-use below has several seconds of margin
    CONFIG = f"""
[tokens]
refresh_grace = {GRACE}
"""

    def test_reuse_after_grace_revokes_family(self):
        r = self.register()
        start = time.monotonic()
        n1 = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        again = self.idmd.call("refreshToken", {"refreshToken": r["refreshToken"]})
        self.assertEqual(again["refreshToken"], n1["refreshToken"])
        jwts = [n1["jwt"], again["jwt"]]
        # Re-use the rotated token until the window closes: inside it every re-use gets the same
        # successor; the first one after it is refused and revokes the family.
        deadline = start + self.GRACE + 60
        while True:
            with self.idmd.client() as c:
                reply = c.request("refreshToken", {"refreshToken": r["refreshToken"]})
            if "error" in reply:
                break
            self.assertEqual(reply["result"]["refreshToken"], n1["refreshToken"])
            jwts.append(reply["result"]["jwt"])
            self.assertLess(time.monotonic(), deadline, "the grace window did not close")
            time.sleep(0.2)
        self.assertError(reply["error"], 401, "invalid_token")
        # not before the window was over (counted from before the rotation; 0.5 s for the clocks)
        self.assertGreaterEqual(time.monotonic() - start, self.GRACE - 0.5)
        for t in [n1["refreshToken"], r["customerToken"]] + jwts:
            self.assertInactive(t)
        # and that stays so after a restart (the revocation was committed)
        self.idmd.stop()
        self.idmd.start()
        self.assertInactive(n1["refreshToken"])
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": n1["refreshToken"]}), 401, "invalid_token")


class ShortLifetimes(TokenTestCase):
    # Refresh tokens live 10 s, customerTokens 5 s. Each step that must come before an expiry
    # comes about 5 s before it, and what must come after one waits for the daemon to report it.
    REFRESH_TTL = 10
    CUSTOMER_TTL = 5
    CONFIG = f"""
[tokens]
access_ttl = 1
refresh_ttl = {REFRESH_TTL}
refresh_grace = 1
customer_token_ttl = {CUSTOMER_TTL}
"""

    def wait_inactive(self, token, timeout=60):
        deadline = time.monotonic() + timeout
        while self.introspect(token)["active"]:
            self.assertLess(time.monotonic(), deadline, "the token did not expire")
            time.sleep(0.1)

    def refresh(self, token):
        return self.idmd.call("refreshToken", {"refreshToken": token})

    def test_expiry_and_sliding(self):
        r = self.register()
        idle = self.login()  # a second session, which nobody refreshes
        rt0 = self.introspect(r["refreshToken"])
        ct = self.introspect(r["customerToken"])
        self.assertAlmostEqual(rt0["exp"] - rt0["iat"], self.REFRESH_TTL, delta=1)
        self.assertAlmostEqual(ct["exp"] - ct["iat"], self.CUSTOMER_TTL, delta=1)
        self.assertGreaterEqual(self.introspect(idle["refreshToken"])["exp"], rt0["exp"])

        # the customerToken ends by itself, not before its exp
        self.wait_inactive(r["customerToken"])
        self.assertGreaterEqual(time.time(), ct["exp"])
        # the JWT (access_ttl 1 s) is past its exp now, but within the 60 s leeway
        j = self.introspect(r["jwt"])
        self.assertTrue(j["active"])
        self.assertLess(j["exp"], ct["exp"])

        # half-way through its life, the refresh token is rotated: the successor lives
        # refresh_ttl from its issue, beyond the first token's exp
        n1 = self.refresh(r["refreshToken"])
        i1 = self.introspect(n1["refreshToken"])
        self.assertAlmostEqual(i1["exp"] - i1["iat"], self.REFRESH_TTL, delta=1)
        self.assertGreater(i1["exp"], rt0["exp"])

        # the session nobody refreshed ends at its exp, and its refresh token is then refused
        self.wait_inactive(idle["refreshToken"])
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": idle["refreshToken"]}), 401, "token_expired")
        self.assertInactive(idle["customerToken"])

        # the refreshed session outlives the first token's life: n1 still works (about 5 s
        # before its exp), after the moment (by the daemon's clock) the first token was dead
        n2 = self.refresh(n1["refreshToken"])
        i2 = self.introspect(n2["refreshToken"])
        self.assertGreaterEqual(i2["iat"], rt0["exp"])
        self.assertGreater(i2["exp"], i1["exp"])
        self.assertTrue(self.introspect(n2["jwt"])["active"])


if __name__ == "__main__":
    main()
