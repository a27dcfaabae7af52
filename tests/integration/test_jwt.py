#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Tokens checked by code nobody here wrote: an issued JWT verifies with PyJWT (and
python3-cryptography) against getJwks; forged (alg none, HS256 keyed with the public key, an
unknown kid, idmd's kid with a foreign key), altered, expired and not-yet-valid tokens are refused
by our own introspectToken; refresh rotation is atomic under concurrent use; key rotation keeps
old tokens verifying; the configured Argon2 cost is applied to old hashes at the next login."""

import base64
import json
import os
import subprocess
import time

import jwt  # PyJWT, from Debian's python3-jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idmtest import IdmdTestCase, main

PASSWORD = "correct horse 9"
NOBODY = 65534


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Jwt(IdmdTestCase):
    def setUp(self):
        super().setUp()
        self.pub = self.create_publisher()["publisherId"]
        self.session = self.idmd.call("registerCustomer", {
            "email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub,
            "locale": "en_GB", "country": "GB", "currency": "GBP"})

    def jwks(self):
        return {k["kid"]: k for k in self.idmd.call("getJwks")["keys"]}

    def public_key(self, kid):
        return jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(self.jwks()[kid]))

    def active(self, token):
        return self.idmd.call("introspectToken", {"token": token})

    def signing_key(self, kid):
        """The daemon's own secret key, read from its state directory or its store (the test runs
        as root)."""
        sk = b64url_decode(self.idmd.signing_keys()[kid]["secretKey"])
        return Ed25519PrivateKey.from_private_bytes(sk[:32])

    def forge(self, header, claims, key):
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = key.sign(signing_input.encode())
        return signing_input + "." + b64url(sig)

    def test_pyjwt_verifies_issued_token(self):
        token = self.session["jwt"]
        header = jwt.get_unverified_header(token)
        self.assertEqual(header["alg"], "EdDSA")
        self.assertEqual(header["typ"], "at+jwt")
        claims = jwt.decode(token, self.public_key(header["kid"]), algorithms=["EdDSA"],
                            audience=self.pub, issuer="idmd",
                            options={"require": ["exp", "iat", "nbf", "iss", "sub", "aud", "jti"]})
        self.assertEqual(claims["sub"], self.session["customerId"])
        self.assertEqual(claims["customerId"], self.session["customerId"])
        self.assertEqual(claims["publisherId"], self.pub)
        self.assertEqual(claims["exp"] - claims["iat"], 15 * 60)
        info = self.active(token)
        self.assertTrue(info["active"])
        for k in ("sub", "exp", "iat", "iss", "aud", "customerId", "publisherId"):
            self.assertEqual(info[k], claims[k], k)
        self.assertEqual(info["token_type"], "access_token")

    def test_forged_and_altered_tokens_rejected(self):
        token = self.session["jwt"]
        h, c, s = token.split(".")
        claims = json.loads(b64url_decode(c))
        header = json.loads(b64url_decode(h))
        self.assertTrue(self.active(token)["active"])

        # a changed claim under the original signature
        evil = dict(claims, customerId="0000000001", sub="0000000001")
        altered = h + "." + b64url(json.dumps(evil).encode()) + "." + s
        # alg none, no signature
        none = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()) + "." + c + "."
        # HS256 with the public key as the HMAC secret (the classic confusion attack)
        pub_x = b64url_decode(self.jwks()[header["kid"]]["x"])
        import hmac, hashlib
        hs_input = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}).encode()) + "." + c
        hs256 = hs_input + "." + b64url(hmac.new(pub_x, hs_input.encode(), hashlib.sha256).digest())
        # a valid Ed25519 signature by a key idmd does not know
        stranger = self.forge({"alg": "EdDSA", "typ": "at+jwt", "kid": "unknownkid000000"}, claims,
                              Ed25519PrivateKey.generate())
        # the right key and kid, but expired (beyond the 60 s leeway)
        now = int(time.time())
        real_key = self.signing_key(header["kid"])
        expired = self.forge(header, dict(claims, iat=now - 3600, nbf=now - 3600, exp=now - 120), real_key)
        # the right key and kid, but not valid before an hour from now (beyond the leeway)
        not_yet = self.forge(header, dict(claims, iat=now + 3600, nbf=now + 3600, exp=now + 3900), real_key)
        # idmd's own kid, signed by a key idmd does not know
        foreign = self.forge(header, claims, Ed25519PrivateKey.generate())
        # control: the same forging path with valid times is accepted, so the checks above are real
        fresh = self.forge(header, dict(claims, iat=now, nbf=now, exp=now + 300), real_key)
        self.assertTrue(self.active(fresh)["active"])

        # Tokens that only the signature check can refuse: header, kid, alg, issuer, audience,
        # customer, family and times are all as idmd issued them (or still valid), so a daemon
        # that did not verify the signature would accept each of them.
        def compact(obj):
            return b64url(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())
        # (control: the daemon encodes claims compactly in this order, so re-encoding reproduces
        # its payload byte for byte, and the two tokens below differ from it only where named)
        self.assertEqual(compact(claims), c)
        # one character in the middle of the signature changed (still valid base64url, same length)
        i = len(s) // 2
        bad_sig = h + "." + c + "." + s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
        # exp moved an hour later, under the original signature
        self.assertGreater(claims["exp"], time.time())
        longer = h + "." + compact(dict(claims, exp=claims["exp"] + 3600)) + "." + s
        # the same claims and values in another key order, under the original signature
        reordered_claims = dict(reversed(list(claims.items())))
        self.assertEqual(reordered_claims, claims)
        self.assertNotEqual(compact(reordered_claims), c)
        reordered = h + "." + compact(reordered_claims) + "." + s
        for name, bad in [("signature changed", bad_sig), ("exp extended", longer), ("claims reordered", reordered)]:
            with self.subTest(name):
                self.assertNotEqual(bad, token)
                self.assertEqual(self.active(bad), {"active": False})
                self.assertError(self.idmd.error("getCustomer", {"jwt": bad}), 401, "invalid_token")
                # PyJWT agrees: the signature does not match
                with self.assertRaises(jwt.InvalidSignatureError):
                    jwt.decode(bad, self.public_key(header["kid"]), algorithms=["EdDSA"], audience=self.pub)
        # the original token is untouched by all this
        self.assertTrue(self.active(token)["active"])

        for name, bad in [("altered", altered), ("alg none", none), ("HS256", hs256),
                          ("unknown kid", stranger), ("expired", expired), ("not yet valid", not_yet),
                          ("idmd's kid, foreign key", foreign), ("garbage", "a.b.c"), ("empty", "")]:
            with self.subTest(name):
                self.assertEqual(self.active(bad), {"active": False})
                err = self.idmd.error("getCustomer", {"jwt": bad}) if bad else None
                if err:
                    self.assertEqual(err["code"], 401)
        self.assertEqual(self.idmd.error("getCustomer", {"jwt": expired})["data"]["reason"], "token_expired")
        # PyJWT agrees about the altered one
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(altered, self.public_key(header["kid"]), algorithms=["EdDSA"], audience=self.pub)

    def test_key_rotation(self):
        old_token = self.session["jwt"]
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        new_kid = self.idmd.call("rotateSigningKey")["kid"]
        self.assertNotEqual(old_kid, new_kid)
        self.assertEqual(set(self.jwks()), {old_kid, new_kid})
        login = self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub})
        self.assertEqual(jwt.get_unverified_header(login["jwt"])["kid"], new_kid)
        # both verify: the old key keeps verifying the tokens it signed
        self.assertTrue(self.active(old_token)["active"])
        self.assertTrue(self.active(login["jwt"])["active"])
        jwt.decode(old_token, self.public_key(old_kid), algorithms=["EdDSA"], audience=self.pub)
        # and after a restart
        self.idmd.stop()
        self.idmd.start()
        self.assertTrue(self.active(old_token)["active"])
        self.assertEqual(set(self.jwks()), {old_kid, new_kid})
        # only admin peers may rotate: an unprivileged uid is refused and nothing changes
        reply = self.idmd.call_as(NOBODY, [["rotateSigningKey", {}]])[0]
        self.assertNotIn("result", reply)
        self.assertError(reply["error"], 403, "forbidden")
        self.assertEqual(set(self.jwks()), {old_kid, new_kid})
        self.assertEqual(self.idmd.call("getStats")["keys"]["active"], new_kid)
        login = self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub})
        self.assertEqual(jwt.get_unverified_header(login["jwt"])["kid"], new_kid)

    def test_key_rotation_revoking_the_previous_key(self):
        """A key that may have leaked: rotateSigningKey {revokePrevious} deletes every retired key
        at once; JWTs they signed fail, the sessions go on through their refresh tokens."""
        old_token = self.session["jwt"]
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        middle_kid = self.idmd.call("rotateSigningKey")["kid"]
        result = self.idmd.call("rotateSigningKey", {"revokePrevious": True})
        new_kid = result["kid"]
        self.assertEqual(result["revoked"], 2)
        self.assertEqual(set(self.jwks()), {new_kid})
        self.assertEqual(list(self.idmd.signing_keys()), [new_kid])
        self.assertFalse(self.active(old_token)["active"])
        self.assertError(self.idmd.error("getCustomer", {"jwt": old_token}), 401, "invalid_token")
        fresh = self.idmd.call("refreshToken", {"refreshToken": self.session["refreshToken"]})
        self.assertEqual(jwt.get_unverified_header(fresh["jwt"])["kid"], new_kid)
        self.assertEqual(self.idmd.call("getCustomer", {"jwt": fresh["jwt"]})["email"], "alice@example.com")
        # Nothing comes back after a restart; a plain rotation afterwards revokes nothing.
        self.idmd.stop()
        self.idmd.start()
        self.assertEqual(set(self.jwks()), {new_kid})
        self.assertNotIn(middle_kid, self.jwks())
        self.assertEqual(self.idmd.call("rotateSigningKey")["revoked"], 0)
        self.assertError(self.idmd.error("rotateSigningKey", {"revokePrevious": "yes"}), -32602, "invalid_params")

    def test_refresh_rotation_and_reuse(self):
        # an unrelated session of the same customer, which none of the below may touch
        other = self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub})
        rt = self.session["refreshToken"]
        first = self.idmd.call("refreshToken", {"refreshToken": rt})
        self.assertNotEqual(first["refreshToken"], rt)
        self.assertTrue(self.active(first["jwt"])["active"])
        # within the grace window, the same peer re-using the old token gets the same successor
        again = self.idmd.call("refreshToken", {"refreshToken": rt})
        self.assertEqual(again["refreshToken"], first["refreshToken"])
        second = self.idmd.call("refreshToken", {"refreshToken": first["refreshToken"]})
        self.assertNotIn(second["refreshToken"], (rt, first["refreshToken"]))
        self.assertTrue(self.active(second["refreshToken"])["active"])
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": "garbage"}), 401, "invalid_token")
        # the other session is unaffected: its tokens are live and rotate on their own
        for t in (other["jwt"], other["refreshToken"], other["customerToken"]):
            self.assertTrue(self.active(t)["active"], t)
        mine = self.idmd.call("refreshToken", {"refreshToken": other["refreshToken"]})
        self.assertNotIn(mine["refreshToken"], (rt, first["refreshToken"], second["refreshToken"]))
        self.assertTrue(self.active(mine["refreshToken"])["active"])
        # and rotating it did not touch this session either
        self.assertTrue(self.active(second["refreshToken"])["active"])
        self.assertTrue(self.active(second["jwt"])["active"])

    def test_concurrent_refresh_makes_one_successor(self):
        rt = self.session["refreshToken"]
        n = 16
        clients = [self.idmd.client() for _ in range(n)]
        try:
            for c in clients:
                c.send_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "refreshToken",
                                       "params": {"refreshToken": rt}}).encode() + b"\n")
            replies = [c.recv_line() for c in clients]
        finally:
            for c in clients:
                c.close()
        # every concurrent user of the token (same uid, within the grace window) got a result ...
        for r in replies:
            self.assertIsNotNone(r, replies)
            self.assertIn("result", r, replies)
        # ... and it names the one and only successor
        successors = {r["result"]["refreshToken"] for r in replies}
        self.assertEqual(len(successors), 1, replies)
        successor = successors.pop()
        self.assertNotEqual(successor, rt)
        self.assertTrue(self.active(successor)["active"])
        self.assertEqual(self.active(rt), {"active": False})

    def test_logout_all_and_revoke(self):
        other = self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": self.pub})
        self.assertEqual(self.idmd.call("revokeToken", {"token": other["refreshToken"]}), {})
        self.assertEqual(self.active(other["refreshToken"]), {"active": False})
        self.assertEqual(self.active(other["jwt"]), {"active": False})
        self.assertTrue(self.active(self.session["refreshToken"])["active"])
        self.assertEqual(self.idmd.call("revokeToken", {"token": "not a token"}), {})
        self.idmd.call("logoutAll", {"jwt": self.session["jwt"]})
        for t in (self.session["refreshToken"], self.session["customerToken"], self.session["jwt"]):
            self.assertEqual(self.active(t), {"active": False})


class ReuseWithoutGrace(IdmdTestCase):
    CONFIG = "\n[tokens]\nrefresh_grace = 0\n"

    def test_reuse_revokes_only_that_family(self):
        pub = self.create_publisher()["publisherId"]
        s = self.idmd.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub,
                                                "locale": "en_GB", "country": "GB", "currency": "GBP"})
        other = self.idmd.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        successor = self.idmd.call("refreshToken", {"refreshToken": s["refreshToken"]})
        # the rotated token comes back: theft is assumed, its family is revoked
        self.assertError(self.idmd.error("refreshToken", {"refreshToken": s["refreshToken"]}), 401, "invalid_token")
        for t in (successor["refreshToken"], successor["jwt"], s["customerToken"]):
            self.assertEqual(self.idmd.call("introspectToken", {"token": t}), {"active": False})
        # the customer's other session is untouched
        self.assertTrue(self.idmd.call("introspectToken", {"token": other["refreshToken"]})["active"])
        self.idmd.call("refreshToken", {"refreshToken": other["refreshToken"]})


class Rehash(IdmdTestCase):
    def stored_hash(self):
        self.idmd.stop()
        dump = json.dumps(self.idmd.table("customers"))
        self.idmd.start()
        hashes = [h for h in dump.split('"') if h.startswith("$argon2id$")]
        self.assertEqual(len(hashes), 1, dump)
        return hashes[0]

    def test_rehash_when_cost_changes(self):
        pub = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub,
                                            "locale": "en_GB", "country": "GB", "currency": "GBP"})
        before = self.stored_hash()
        self.assertIn("m=8,t=1", before)
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write("\n[passwords]\nargon2_opslimit = 2\nargon2_memlimit = 64K\n")
        self.idmd.start()
        self.idmd.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})
        after = self.stored_hash()
        self.assertIn("m=64,t=2", after)
        # and the upgraded hash still verifies
        self.idmd.call("login", {"email": "a@example.com", "password": PASSWORD, "publisherId": pub})


if __name__ == "__main__":
    main()
