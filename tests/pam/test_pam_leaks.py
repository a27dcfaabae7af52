# SPDX-License-Identifier: MIT
"""1,000 PAM transactions in one process leave its descriptors and heap where they started: a
successful login with account, session and environment; a wrong password; idmd absent; idmd too
slow. Counted by pam-drive --loop (entries of /proc/self/fd, mallinfo2().uordblks) after a
warm-up of 10 transactions. Under ASan the heap numbers are not available, LeakSanitizer checks
instead (pam-drive exits non-zero on a leak)."""

import os
import signal

from pamtest import PASSWORD, SANITIZED, PamTestCase, main

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


if __name__ == "__main__":
    main()
