#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""File modes whatever the umask: idmd started under umask 000 on a fresh state directory makes
the state directory and keys/ 0700 and the store, its lock and every signing key file 0600 (a
key rotated in, too), and a backup (idmctl backup, also under umask 000) the same; the socket's
directory is not writable by others; a restart on the existing directory keeps it so."""

import os
import stat
import subprocess

from idmtest import IDMCTL, Idmd, IdmdTestCase, main, skip_on_postgresql

PASSWORD = "correct horse 9"
UMASK_000 = ["sh", "-c", 'umask 000; exec "$@"', "sh"]


class FileModes(IdmdTestCase):
    def setUp(self):
        self.idmd = Idmd()
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start(args=UMASK_000 + self.idmd.args())

    def assertPrivate(self, top):
        """Every directory under top (top included) 0700, every other entry a regular file 0600."""
        seen = []
        for root, dirs, files in os.walk(top):
            self.assertEqual(stat.S_IMODE(os.lstat(root).st_mode), 0o700, root)
            for name in files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                self.assertTrue(stat.S_ISREG(st.st_mode), path)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, path)
                seen.append(os.path.relpath(path, top))
        return sorted(seen)

    @skip_on_postgresql("the LMDB files in the state directory, and their backup")
    def test_umask_000(self):
        pub = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub})
        self.idmd.call("rotateSigningKey")           # a key file written after start
        files = self.assertPrivate(self.idmd.state)
        self.assertIn("data.mdb", files)
        self.assertIn("lock.mdb", files)
        self.assertEqual(len([f for f in files if f.startswith("keys/")]), 2, files)
        # The socket is for everyone (roles come from SO_PEERCRED); its directory is not theirs.
        run = os.path.dirname(self.idmd.socket)
        self.assertEqual(stat.S_IMODE(os.stat(run).st_mode) & 0o022, 0, run)

        target = os.path.join(self.idmd.tmp, "backup")
        p = subprocess.run(UMASK_000 + [IDMCTL, "--socket", self.idmd.socket, "backup", target],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        backup = self.assertPrivate(target)
        self.assertEqual(backup, sorted(f for f in files if f == "data.mdb" or f.startswith("keys/")))

        # A restart on the existing directory, still under umask 000.
        self.idmd.stop()
        self.idmd.start(args=UMASK_000 + self.idmd.args())
        self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub})
        self.assertEqual(self.assertPrivate(self.idmd.state), files)


if __name__ == "__main__":
    main()
