#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Login timing as an unprivileged peer sees it: 200 logins each with a known e-mail and the right
password, a known e-mail and a wrong one, and an unknown e-mail, interleaved on one connection.
The medians are printed; only a generous bound is asserted (a wrong password and an unknown
e-mail within a factor of 3 of each other: both run a full Argon2id hash), so the test never
turns flaky on a slow, busy machine. Timings proper are measured in bench/."""

from idmtest import IdmdTestCase, main, median_latencies

PASSWORD = "correct horse 9"
NOBODY = 65534


class LoginTiming(IdmdTestCase):
    # 400 failures must not lock anything: lockout would answer sooner than a hash.
    CONFIG = "\n[lockout]\ndeny = 1000\n"

    def test_known_unknown_right_wrong(self):
        pub = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub})
        medians, replies = median_latencies(self.idmd, {
            "known, right": ("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub}),
            "known, wrong": ("login", {"email": "alice@example.com", "password": "wrong horse 9", "publisherId": pub}),
            "unknown": ("login", {"email": "nobody@example.com", "password": PASSWORD, "publisherId": pub}),
        }, uid=NOBODY)
        print("median login: " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in medians.items()))
        for r in replies["known, right"]:
            self.assertIn("jwt", r.get("result", {}), r)
        # The same answer for a wrong password and an unknown address.
        for name in ("known, wrong", "unknown"):
            for r in replies[name]:
                self.assertError(r["error"], 401, "invalid_credentials")
        wrong, unknown = medians["known, wrong"], medians["unknown"]
        self.assertLess(max(wrong, unknown) / min(wrong, unknown), 3)


if __name__ == "__main__":
    main()
