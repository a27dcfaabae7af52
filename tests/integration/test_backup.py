#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Backup and restore: idmctl backup DIR while idmd serves a write load gives a directory laid out
as a state directory (the store's consistent copy and every signing key); a second idmd started on
it logs in a customer registered before the backup, with the same signing keys (its JWT has the
original's kid and verifies with the original's JWKS); customers registered during the copy are
either wholly there or absent. A path that exists or is relative is refused; only admins may ask."""

import base64
import json
import os
import subprocess
import threading
import unittest

import jwt

from idmtest import IDMCTL, TEST_PG, Idmd, IdmdTestCase, main, skip_on_postgresql

PASSWORD = "correct horse 9"


@skip_on_postgresql("idmd writes the backup (a copy of the LMDB file and the keys); PostgreSQL's is pg_dump's")
class Backup(IdmdTestCase):
    def register(self, email, pub, client=None):
        params = {"email": email, "password": PASSWORD, "publisherId": pub}
        return (client or self.idmd).call("registerCustomer", params)

    def test_backup_under_load_then_restore(self):
        pub = self.create_publisher()["publisherId"]
        self.register("before@example.com", pub)
        kid = self.idmd.call("getJwks")["keys"][0]["kid"]

        stop = threading.Event()
        errors = []
        done = []

        def load(n):
            with self.idmd.client() as c:
                i = 0
                while not stop.is_set():
                    try:
                        self.register(f"load{n}-{i}@example.com", pub, c)
                    except Exception as e:      # noqa: BLE001 -- reported below
                        errors.append(e)
                        return
                    done.append(n)
                    i += 1

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            # The copy is taken while registrations are being committed.
            while len(done) < 8 and not errors:
                threading.Event().wait(0.02)
            target = os.path.join(self.idmd.tmp, "backup")
            p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "backup", target], capture_output=True,
                               text=True, timeout=120)
            at_backup = len(done)
            while len(done) < at_backup + 4 and not errors:
                threading.Event().wait(0.02)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^Backup written to .*: the store \(\d+ bytes\) and 1 signing key\(s\)\.$")
        self.assertEqual(sorted(os.listdir(target)), ["data.mdb", "keys"])
        self.assertEqual(os.stat(target).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(os.path.join(target, "data.mdb")).st_mode & 0o777, 0o600)
        self.assertRegex(self.idmd.log_text(), r"backup written to .* by uid 0")

        # Restore: the backup directory is a state directory.
        os.makedirs(os.path.join(self.idmd.tmp, "second"))
        restored = Idmd("", tmp=os.path.join(self.idmd.tmp, "second"))
        self.addCleanup(restored.cleanup)
        restored.state = target
        restored.start()
        login = restored.call("login", {"email": "before@example.com", "password": PASSWORD, "publisherId": pub})
        header = json.loads(base64.urlsafe_b64decode(login["jwt"].split(".")[0] + "=="))
        self.assertEqual(header["kid"], kid)
        # The restored key is the original's: the original's published key verifies the JWT.
        keys = jwt.PyJWKSet.from_dict(self.idmd.call("getJwks")).keys
        key = next(k for k in keys if k.key_id == kid)
        self.assertEqual(jwt.decode(login["jwt"], key.key, algorithms=["EdDSA"], audience=pub)["sub"],
                         login["customerId"])
        # Whatever the load registered made it whole or not at all: each customer found can log in.
        items = restored.call("listCustomers", {"publisherId": pub, "limit": 1000})["items"]
        self.assertGreaterEqual(len(items), 1 + 8)
        for c in items[-3:]:
            restored.call("login", {"email": c["email"], "password": PASSWORD, "publisherId": pub})

    def test_refusals(self):
        exists = os.path.join(self.idmd.tmp, "exists")
        os.mkdir(exists)
        for path in (exists, "relative/backup", os.path.join(self.idmd.tmp, "no", "parent")):
            with self.subTest(path=path):
                e = self.idmd.error("backup", {"path": path})
                self.assertError(e, 400, "invalid_value")
        self.idmd.open_to_others()
        [reply] = self.idmd.call_as(65534, [("backup", {"path": os.path.join(self.idmd.tmp, "b")})])
        self.assertError(reply["error"], 403, "forbidden")
        self.assertFalse(os.path.exists(os.path.join(self.idmd.tmp, "b")))


@unittest.skipUnless(TEST_PG, "PostgreSQL only")
class NoBackupOnPostgresql(IdmdTestCase):
    def test_backup_refused_with_a_reason(self):
        target = os.path.join(self.idmd.tmp, "backup")
        with self.assertRaises(Exception) as e:
            self.idmd.call("backup", {"path": target})
        self.assertEqual(e.exception.error["code"], 400, e.exception.error)
        self.assertEqual(e.exception.error["data"]["reason"], "not_supported")
        self.assertIn("pg_dump", e.exception.error["message"])
        self.assertFalse(os.path.exists(target))


if __name__ == "__main__":
    main()
