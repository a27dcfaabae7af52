# SPDX-License-Identifier: MIT
"""mode=device against the real idmd: pam_idm starts a device login, shows the code, and polls
while a customer approves it through the socket (before Enter is pressed, or from another thread
while pam_idm polls); a denial, an approval by another customer of the publisher (whose new
session is revoked again) and a user code of the wrong publisher fail; and with no PAM_USER the
customer who approves becomes PAM_USER (the account step then runs for that customer).
test_pam_modes.py keeps the scripted stand-in for what the real idmd cannot be made to do (slow
answers, malformed results, idle connections)."""

import os
import re
import subprocess
import threading
import time

from pamtest import PASSWORD, PamTestCase, Result, main

VERIFY_URL = "https://tv.example.com/activate"


class DeviceLogin(PamTestCase):
    NEEDS = ("startDeviceLogin", "pollDeviceLogin", "approveDeviceLogin", "denyDeviceLogin")

    def setUp(self):
        super().setUp()
        self.idmd.call("updatePublisher", {"publisherId": self.publisher, "deviceVerificationUrl": VERIFY_URL})
        self.svc = self.idm_service("tv", "mode=device", "export_env")

    def run_device(self, user, decide, *ops, at_prompt=True, svc=None, **kw):
        """Runs ops (default: auth) for user; decide(user_code) approves or denies through the socket,
        when the prompt comes (at_prompt) or from a thread once the module's first poll after Enter
        was answered (pending: idmd counts it), not after a fixed time a slow module may outlast."""
        argv = self.drive_argv(svc or self.svc, user, *(ops or ("auth",)), echo=["@stdin"], **kw)
        seen = {}
        threads = []

        def on_line(line, proc):
            m = re.match(r"info To sign in, visit (\S+) and enter the code (\S+)$", line.rstrip("\n"))
            if m:
                seen["uri"], seen["code"] = m.group(1), m.group(2)
            if line.startswith("prompt-on"):
                if at_prompt:
                    decide(seen["code"])
                else:
                    t = threading.Thread(target=lambda: (self.wait_polled(), decide(seen["code"])))
                    t.start()
                    threads.append(t)
                proc.stdin.write("\n")
                proc.stdin.flush()
            return False

        done, elapsed = self._drive_piped(argv, None, 60, on_line)
        for t in threads:
            t.join()
        self.assertEqual(seen.get("uri"), VERIFY_URL, done.stdout)
        return Result(argv, done, elapsed)

    def wait_polled(self):
        deadline = time.monotonic() + 60
        while self.idmd.call("getStats")["methods"].get("pollDeviceLogin", {}).get("calls", 0) < 1:
            if time.monotonic() > deadline:
                return      # the drive's own timeout reports it
            time.sleep(0.05)

    def approve(self, jwt=None):
        return lambda code: self.idmd.call("approveDeviceLogin", {"jwt": jwt or self.customer["jwt"],
                                                                  "userCode": code})

    def device_records(self):
        return [k for k in self.idmd.table("tokens") if k.startswith(("device:", "devcode:"))]

    def test_approved_at_the_prompt(self):
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(), "auth", "env"))
        self.assertEqual(r.results, [("auth", "PAM_SUCCESS")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        self.assertEqual(r.prompts, [("prompt-on", "Press Enter once approved: ")], r)
        self.assertEqual(self.device_records(), [])

    def test_approved_while_polling(self):
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(), "auth", "env", at_prompt=False))
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)
        self.assertGreaterEqual(r.elapsed, 5.0, r)      # pending at first, then the 5 s interval

    def test_denied(self):
        deny = lambda code: self.idmd.call("denyDeviceLogin", {"jwt": self.customer["jwt"], "userCode": code})
        r = self.assertDrive(self.run_device(self.EMAIL, deny, "auth=PAM_AUTH_ERR"))
        self.assertEqual(r.code("auth"), "PAM_AUTH_ERR", r)

    def test_approved_by_another_customer(self):
        bob = self.register("bob@example.com", PASSWORD)
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(bob["jwt"]), "auth=PAM_AUTH_ERR"))
        self.assertEqual(r.code("auth"), "PAM_AUTH_ERR", r)
        self.assertTrue(r.logged(f"the code belongs to another customer than '{self.EMAIL}', refusing"), r)
        # Bob's device session was revoked again; his own login session lives on.
        self.assertEqual(len(self.idmd.call("getCustomer", {"jwt": bob["jwt"]})["email"]), len("bob@example.com"))

    def test_no_user_the_approver_becomes_the_user(self):
        r = self.assertDrive(self.run_device("", self.approve(), "auth", "acct", "env"))
        self.assertEqual(r.results, [("auth", "PAM_SUCCESS"), ("acct", "PAM_SUCCESS")], r)
        self.assertEqual(r.env.get("IDM_CUSTOMER_ID"), self.customer["customerId"], r)

    def test_another_publishers_customer_cannot_approve(self):
        other = self.create_publisher(name="Other")["publisherId"]
        mallory = self.register("mallory@example.com", PASSWORD, publisher=other)
        refused = []

        def try_then_approve(code):
            refused.append(self.idmd.error("approveDeviceLogin", {"jwt": mallory["jwt"], "userCode": code}))
            self.approve()(code)

        r = self.assertDrive(self.run_device(self.EMAIL, try_then_approve))
        self.assertEqual(refused[0]["code"], 404, refused)
        self.assertEqual(r.code("auth"), "PAM_SUCCESS", r)


    def test_qr_code_on_a_local_terminal(self):
        svc = self.idm_service("tv-qr", "mode=device", "qr")
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(), svc=svc, tty="tty1"))
        self.assertEqual(r.code("auth"), "PAM_SUCCESS", r)
        qr = [line for line in r.infos if not line.startswith("To sign in")]
        self.assertGreater(len(qr), 10, r)
        # Back to modules: two rows a line, a block is light; a 2-module light border.
        halves = {" ": (0, 0), "\u2580": (1, 0), "\u2584": (0, 1), "\u2588": (1, 1)}
        self.assertLessEqual(set("".join(qr)), set(halves), r)
        self.assertEqual(len({len(line) for line in qr}), 1, r)
        rows = [[halves[c][i] for c in line] for line in qr for i in (0, 1)]
        w = len(qr[0]) - 4
        self.assertEqual((w - 17) % 4, 0, f"{w} is no QR code's width")
        self.assertTrue(all(rows[y][x] for y in (0, 1, w + 2) for x in range(w + 4)), r)
        light = lambda y, x: rows[y + 2][x + 2]
        # The three finder patterns: a dark 7x7 ring, a light ring, a dark 3x3 centre.
        for oy, ox in ((0, 0), (0, w - 7), (w - 7, 0)):
            for y in range(7):
                for x in range(7):
                    ring = max(abs(y - 3), abs(x - 3))
                    self.assertEqual(light(oy + y, ox + x), ring == 2, (oy, ox, y, x))
        # Decoded by an independent reader (zbar), it is verificationUriComplete.
        code = next(re.match(r"To sign in, visit \S+ and enter the code (\S+)$", i).group(1) for i in r.infos
                    if i.startswith("To sign in"))
        scale, border = 4, 4
        size = (w + 4 + 2 * border) * scale
        pbm = [f"P1\n{size} {size}\n"]
        for y in range(-border, w + 4 + border):
            row = "".join("0" if not (0 <= y < w + 4 and 0 <= x < w + 4) or rows[y][x] else "1"
                          for x in range(-border, w + 4 + border) for _ in range(scale))
            pbm += [" ".join(row) + "\n"] * scale
        path = os.path.join(self.idmd.tmp, "qr.pbm")
        with open(path, "w") as f:
            f.writelines(pbm)
        p = subprocess.run(["zbarimg", "--raw", "-q", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), f"{VERIFY_URL}?user_code={code}")
        # Not over ssh (a remote host), and not without a terminal.
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(), svc=svc, tty="ssh", rhost="192.0.2.7"))
        self.assertEqual(len(r.infos), 1, r)
        r = self.assertDrive(self.run_device(self.EMAIL, self.approve(), svc=svc))
        self.assertEqual(len(r.infos), 1, r)


if __name__ == "__main__":
    main()
