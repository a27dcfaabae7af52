# SPDX-License-Identifier: MIT
"""1,000 PAM transactions in one process leave its descriptors and heap where they started: a
successful login with account, session and environment; a wrong password; idmd absent; idmd too
slow. Counted by pam-drive --loop (entries of /proc/self/fd, mallinfo2().uordblks) after a
warm-up of 10 transactions. Under ASan the heap numbers are not available, LeakSanitizer checks
instead (pam-drive exits non-zero on a leak).

And no tokens in the caller's memory: without export_tokens idmd's pamAuthenticate reply to the
module carries no jwt, refreshToken or customerToken (seen on the wire by a relay), and after the
transaction none of them is anywhere in the caller's writable memory, freed or not (jansson's
parser leaves copies of what it read in freed heap); export_tokens still asks for them and exports
them."""

import json
import os
import signal

from pamtest import PASSWORD, SANITIZED, PamTestCase, Relay, main

LOOPS = 1000
# The dynamic linker's own bookkeeping for libpam's dlopen()/dlclose() of the module moves the
# heap by a few KiB either way, independent of the number of transactions (measured: 0.4-3.7 KiB
# after 200, 1,000 or 4,000). Leaking the smallest malloc chunk (32 bytes) once per transaction
# would add 31 KiB over the 990 measured ones; valgrind (suite slow) and LeakSanitizer count exactly.
HEAP_SLACK = 16 * 1024


class TestLeaks(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "pamCloseSession")
    CONFIG = "[lockout]\ndeny = 0\n"

    def loop(self, svc, *ops, loops=LOOPS, **kw):
        r = self.ok(svc, self.EMAIL, *ops, loop=loops, timeout=240, **kw)
        print(f"{' '.join(ops)} x{loops}: {r.stats}, {r.elapsed:.1f} s", flush=True)
        self.assertEqual(r.stats["fds-after"], r.stats["fds-before"], r)
        if not SANITIZED:
            self.assertGreater(r.stats["heap-before"], 0, r)
            self.assertLessEqual(r.stats["heap-after"] - r.stats["heap-before"], HEAP_SLACK, r)
        return r

    def test_successful_logins(self):
        svc = self.idm_service("kiosk", "export_tokens")
        self.loop(svc, "auth", "setcred", "acct", "open", "env", "close", pw=[PASSWORD])

    def test_wrong_passwords(self):
        svc = self.idm_service("kiosk")
        self.loop(svc, "auth=PAM_AUTH_ERR", pw=["Wrong-passw0rd"])

    def test_unknown_users(self):
        svc = self.idm_service("kiosk")
        r = self.ok(svc, "nobody@example.com", "auth=PAM_USER_UNKNOWN", "acct=PAM_USER_UNKNOWN", loop=LOOPS,
                    pw=["Wrong-passw0rd"], timeout=240)
        self.assertEqual(r.stats["fds-after"], r.stats["fds-before"], r)

    def test_daemon_absent(self):
        self.idmd.stop()
        svc = self.idm_service("kiosk")
        self.loop(svc, "auth=PAM_AUTHINFO_UNAVAIL", "acct=PAM_USER_UNKNOWN", pw=[PASSWORD])

    def test_daemon_too_slow(self):
        svc = self.idm_service("kiosk", "timeout=0.01")
        os.kill(self.idmd.proc.pid, signal.SIGSTOP)
        try:
            self.loop(svc, "auth=PAM_AUTHINFO_UNAVAIL", loops=100, pw=[PASSWORD])
        finally:
            os.kill(self.idmd.proc.pid, signal.SIGCONT)


class TestTokensStayInIdmd(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "pamCloseSession")
    TOKEN_FIELDS = ("jwt", "refreshToken", "customerToken")

    def relay(self):
        relay = Relay(os.path.join(self.idmd.tmp, "relay"), self.idmd.socket)
        self.addCleanup(relay.close)
        return relay

    def authenticate_exchange(self, relay):
        exchanges = [x for x in relay.exchanges() if x[0] == "pamAuthenticate"]
        self.assertEqual(len(exchanges), 1, relay.exchanges())
        _, params, reply = exchanges[0]
        self.assertIn("result", reply, reply)
        return params, reply["result"]

    def needles(self):
        """What would show a token in memory: the names of the token fields (jansson copies an
        object's keys), and the part of the access JWT's header after its first 16 characters
        (the same for every JWT of this idmd's key; a freed chunk's first 16 bytes are reused
        by malloc)."""
        jwt = self.idmd.call("login", {"email": self.EMAIL, "password": PASSWORD,
                                       "publisherId": self.publisher})["jwt"]
        header = jwt.split(".")[0]
        self.assertGreater(len(header), 40, jwt)
        return [header[16:].encode(), b"refreshToken", b"customerToken"]

    def test_no_tokens_without_export_tokens(self):
        relay = self.relay()
        svc = self.idm_service("kiosk", "export_env", socket=relay.path)
        needles = self.needles()
        r, found = self.drive_and_scan(svc, self.EMAIL, "auth", "setcred", "acct", "open", "env", "close",
                                       pw=[PASSWORD], needles=needles + [self.EMAIL.encode()])
        self.assertDrive(r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        self.assertIn("IDM_SESSION_ID", r.env, r)
        self.assertNotIn("IDM_ACCESS_TOKEN", r.env, r)
        self.assertNotIn("IDM_REFRESH_TOKEN", r.env, r)
        # Nothing of a token anywhere in the caller's memory; the scan does read it (the user
        # name is there, in argv at least).
        self.assertGreater(found[self.EMAIL.encode()], 0, found)
        for n in needles:
            self.assertEqual(found[n], 0, (n, found))
        # The module did not ask for tokens, and idmd sent none: what the session step needs is
        # the session id, and the PAM session record stays in idmd.
        params, result = self.authenticate_exchange(relay)
        self.assertNotIn("tokens", params)
        self.assertEqual(sorted(result), ["customerId", "publisherId", "sessionId"], result)
        self.assertEqual(result["sessionId"], r.env["IDM_SESSION_ID"])
        for method, _, reply in relay.exchanges():
            for field in self.TOKEN_FIELDS:
                self.assertNotIn(f'"{field}"', json.dumps(reply), (method, reply))

    def test_export_tokens(self):
        relay = self.relay()
        svc = self.idm_service("kiosk", "export_tokens", socket=relay.path)
        needles = self.needles()
        r, found = self.drive_and_scan(svc, self.EMAIL, "auth", "acct", "open", "env", pw=[PASSWORD],
                                       needles=needles)
        self.assertDrive(r)
        params, result = self.authenticate_exchange(relay)
        self.assertIs(params.get("tokens"), True, params)
        self.assertEqual(sorted(result), sorted(["customerId", "publisherId", "sessionId", *self.TOKEN_FIELDS]))
        self.assertEqual(r.env.get("IDM_ACCESS_TOKEN"), result["jwt"], r)
        self.assertEqual(r.env.get("IDM_REFRESH_TOKEN"), result["refreshToken"], r)
        for name in ("IDM_ACCESS_TOKEN", "IDM_REFRESH_TOKEN"):
            self.assertTrue(self.idmd.call("introspectToken", {"token": r.env[name]})["active"], name)
        self.assertNotIn("IDM_CUSTOMER_TOKEN", r.env, r)
        # The scan finds a token the caller holds: pam-drive printed the environment (its stdout
        # buffer is on the heap).
        self.assertGreater(found[needles[0]], 0, found)


if __name__ == "__main__":
    main()
