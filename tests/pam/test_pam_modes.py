# SPDX-License-Identifier: MIT
"""mode=code and mode=device: their conversation and their checks, against a scripted stand-in for
idmd's token methods (redeemToken, startDeviceLogin, pollDeviceLogin, getCustomer, revokeToken),
because the real idmd does not implement them yet (test_pam_transport.py shows that pam_idm then
answers PAM_AUTHINFO_UNAVAIL). The stand-in listens on a root-owned socket, as idmd would."""

import json
import os
import socket
import threading

from pamtest import PamTestCase, main

PUBLISHER = "123456789"
EMAIL = "alice@example.com"


class FakeIdmd:
    """Answers JSON-RPC lines with self.handle(method, params) -> ("result", obj) or ("error", obj)."""

    def __init__(self, path, handle):
        self.path = path
        self.handle = handle
        self.calls = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn):
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    self.calls.append((req["method"], req["params"]))
                    kind, obj = self.handle(req["method"], req["params"])
                    reply = {"jsonrpc": "2.0", "id": req["id"], kind: obj}
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def methods(self):
        return [m for m, _ in self.calls]


def error(code, reason, **data):
    return "error", {"code": code, "message": reason, "data": dict(reason=reason, **data)}


def tokens(customer="1234567890"):
    return {"customerId": customer, "jwt": "eyJ.a-b.c_d", "refreshToken": "rt-" + customer,
            "customerToken": "ct-" + customer}


class ModeTestCase(PamTestCase):
    """No real idmd is needed for these: the harness's one serves only setUp."""

    def fake(self, handle):
        path = os.path.join(self.idmd.tmp, "fake-socket")
        f = FakeIdmd(path, handle)
        self.addCleanup(f.close)
        return f

    def customer_handler(self, email=EMAIL, publisher=PUBLISHER):
        def get_customer(params):
            if params.get("jwt") != "eyJ.a-b.c_d":
                return error(401, "invalid_token")
            return "result", {"customerId": "1234567890", "email": email, "publisherId": publisher}
        return get_customer


class TestCode(ModeTestCase):
    def handler(self, email=EMAIL):
        get_customer = self.customer_handler(email)

        def handle(method, params):
            if method == "redeemToken":
                return ("result", tokens()) if params.get("token") == "GOOD-CODE" else error(401, "invalid_token")
            if method == "getCustomer":
                return get_customer(params)
            if method == "revokeToken":
                return "result", {}
            return error(-32601, "unknown_method")
        return handle

    def test_code_login(self):
        fake = self.fake(self.handler())
        svc = self.idm_service("tv", "mode=code", "export_env", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth", "env", pw=["GOOD-CODE"])
        self.assertEqual(r.prompts, [("prompt-off", "Code: ")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), "1234567890", r)
        self.assertEqual(r.env.get("IDM_PUBLISHER_ID"), PUBLISHER, r)
        self.assertEqual(fake.methods(), ["redeemToken", "getCustomer"])
        self.ok(svc, EMAIL.upper(), "auth", pw=["GOOD-CODE"])

    def test_bad_code(self):
        fake = self.fake(self.handler())
        svc = self.idm_service("tv", "mode=code", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["BAD-CODE"])

    def test_code_of_another_customer_is_refused_and_revoked(self):
        fake = self.fake(self.handler(email="mallory@example.com"))
        svc = self.idm_service("tv", "mode=code", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", pw=["GOOD-CODE"])
        self.assertTrue(r.logged(f"the code belongs to another customer than '{EMAIL}', refusing"), r)
        self.assertEqual(fake.methods(), ["redeemToken", "getCustomer", "revokeToken"])
        self.assertEqual(fake.calls[-1][1], {"token": "rt-1234567890"})


class TestDevice(ModeTestCase):
    def handler(self, polls, expires_in=600, user_code="BCDF-GHJK", email=EMAIL):
        """polls: what successive pollDeviceLogin calls answer ("pending", "slow", "denied", "ok")."""
        get_customer = self.customer_handler(email)
        answers = list(polls)

        def handle(method, params):
            if method == "startDeviceLogin":
                return "result", {"deviceCode": "dev-code-1", "userCode": user_code,
                                  "verificationUri": "https://tv.example.com/activate",
                                  "verificationUriComplete": f"https://tv.example.com/activate?code={user_code}",
                                  "expiresIn": expires_in, "interval": 1}
            if method == "pollDeviceLogin":
                a = answers.pop(0) if answers else "pending"
                return {"pending": error(428, "authorization_pending"), "slow": error(428, "slow_down"),
                        "denied": error(401, "access_denied"), "ok": ("result", tokens())}[a]
            if method == "getCustomer":
                return get_customer(params)
            if method == "revokeToken":
                return "result", {}
            return error(-32601, "unknown_method")
        return handle

    def test_device_login(self):
        fake = self.fake(self.handler(["pending", "ok"]))
        svc = self.idm_service("tv", "mode=device", "export_env", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth", "env", echo=[""])
        self.assertEqual(r.infos, ["To sign in, visit https://tv.example.com/activate and enter the code BCDF-GHJK"], r)
        # The prompt after the message: sshd shows info messages only together with a prompt.
        self.assertEqual(r.prompts, [("prompt-on", "Press Enter once approved: ")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), "1234567890", r)
        self.assertEqual(fake.methods(), ["startDeviceLogin", "pollDeviceLogin", "pollDeviceLogin", "getCustomer"])
        self.assertEqual(fake.calls[0][1], {"publisherId": PUBLISHER, "deviceName": "tv"})
        self.assertEqual(fake.calls[1][1], {"deviceCode": "dev-code-1"})
        self.assertGreaterEqual(r.elapsed, 1.0, r)      # waited the interval between polls

    def test_denied(self):
        fake = self.fake(self.handler(["denied"]))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])

    def test_expired(self):
        fake = self.fake(self.handler(["pending", "slow"], expires_in=3))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])
        self.assertEqual(r.errors, ["The sign-in code has expired."], r)
        self.assertLess(r.elapsed, 5.0, r)

    def test_no_answer_to_the_prompt(self):
        fake = self.fake(self.handler(["ok"]))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR")
        self.assertEqual(fake.methods(), ["startDeviceLogin"])

    def test_approved_by_another_customer(self):
        fake = self.fake(self.handler(["ok"], email="mallory@example.com"))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        self.ok(svc, EMAIL, "auth=PAM_AUTH_ERR", echo=[""])
        self.assertEqual(fake.methods()[-1], "revokeToken")

    def test_escape_sequences_are_not_shown(self):
        fake = self.fake(self.handler(["ok"], user_code="\x1b[2J"))
        svc = self.idm_service("tv", "mode=device", socket=fake.path, publisher=PUBLISHER)
        r = self.ok(svc, EMAIL, "auth=PAM_SERVICE_ERR", echo=[""])
        self.assertEqual(r.infos, [], r)
        self.assertTrue(r.logged("malformed startDeviceLogin result"), r)


if __name__ == "__main__":
    main()
