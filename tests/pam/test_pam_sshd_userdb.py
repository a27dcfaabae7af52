# SPDX-License-Identifier: MIT
"""A real sshd logs a customer in through the real NSS path: no nss_wrapper, the customer's passwd
entry comes from the stock nss-systemd asking idmd's userdb socket ([userdb], docs/userdb.md),
pam_idm's account step checks the uid (unix), and pam_mkhomedir makes the home directory in the
test's temporary directory at the first login.

sshd runs in a private mount namespace (unshare -m) where a tmpfs covers /run/systemd and the
test's userdb directory is bound to /run/systemd/userdb, so nss-systemd in sshd and in the
session finds idmd's socket there; the host's /run/systemd is never touched. idmd itself runs
outside, as in every other test. Otherwise as test_pam_sshd.py (pam_wrapper for the PAM service,
an empty /run/sshd created if missing)."""

import os
import pwd
import shutil
import subprocess

from pamtest import PAM_WRAPPER_LIB, PASSWORD, SANITIZED, PamTestCase, main, pam_wrapper_lock
from test_pam_sshd import SSHD, SshdServer

PAM_MKHOMEDIR = "/usr/lib/x86_64-linux-gnu/security/pam_mkhomedir.so"
NSS_SYSTEMD = "/usr/lib/x86_64-linux-gnu/libnss_systemd.so.2"
UID_MIN = 1879048192

# Runs "$@" (sshd) with idmd's userdb directory where nss-systemd looks, in this mount namespace only.
NAMESPACE = ('mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/userdb && '
             'mount --bind "$USERDB_DIR" /run/systemd/userdb && exec "$@"')


class TestSshdUserdb(SshdServer, PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "setCustomerUnix")

    def setUp(self):
        for tool in (SSHD, shutil.which("ssh"), shutil.which("sshpass"), shutil.which("ssh-keygen"),
                     shutil.which("unshare"), PAM_MKHOMEDIR, NSS_SYSTEMD):
            if not tool or not os.path.exists(tool):
                self.skipTest("openssh-server, openssh-client, sshpass, libnss-systemd and pam_mkhomedir are needed")
        with open("/etc/nsswitch.conf") as f:
            if not any(l.split()[:1] == ["passwd:"] and "systemd" in l for l in f):
                self.skipTest("nsswitch.conf does not list systemd for passwd")
        if SANITIZED:
            self.skipTest("not under sanitizers")       # sshd cannot load a module built with ASan
        if os.geteuid() != 0:
            self.skipTest("sshd and mount namespaces need root")
        try:
            pwd.getpwnam("sshd")
        except KeyError:
            self.skipTest("no sshd user (openssh-server not installed?)")
        super().setUp()
        t = self.t = self.idmd.tmp
        self.homes = os.path.join(t, "home")
        os.mkdir(self.homes, 0o755)
        self.userdb_dir = os.path.join(t, "userdb")

        # idmd serves the publisher's Unix users on <t>/userdb/io.idm.
        self.idmd.call("updatePublisher", {"publisherId": self.publisher, "unixUsers": "enabled"})
        self.uid = self.idmd.call("setCustomerUnix", {"publisherId": self.publisher, "email": self.EMAIL,
                                                      "enabled": True})["unixUid"]
        self.assertEqual(self.uid, UID_MIN)
        self.register("bob@example.com", PASSWORD)      # a customer, but no Unix user
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write(f"\n[userdb]\nsocket = {self.userdb_dir}/io.idm\npublisher = {self.publisher}\n"
                    f"home = {self.homes}/%u\n")
        self.idmd.start()

        self.service("sshd",
                     f"auth required {self.idm()}",
                     f"account required {self.idm('unix')}",
                     f"password required {self.idm()}",
                     f"session required {PAM_MKHOMEDIR} skel=/etc/skel umask=0077",
                     f"session required {self.idm()}")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(t, "hostkey")],
                       check=True, stdin=subprocess.DEVNULL)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # the one host path the recipe allows
        env = dict(os.environ, LD_PRELOAD=PAM_WRAPPER_LIB, PAM_WRAPPER="1", PAM_WRAPPER_SERVICE_DIR=self.svcdir,
                   USERDB_DIR=self.userdb_dir)
        self.start_sshd(t, env, prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE, "sh"])

    def ssh(self, user, password, command):
        env = dict(os.environ, SSHPASS=password, HOME=self.t)
        env.pop("LD_PRELOAD", None)
        argv = ["sshpass", "-e", "-P", "assword", "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR", "-p", str(self.port),
                "-l", user, "127.0.0.1", command]
        with pam_wrapper_lock():
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)

    def test_login_through_nss_systemd(self):
        home = os.path.join(self.homes, self.EMAIL)
        self.assertFalse(os.path.exists(home))
        p = self.ssh(self.EMAIL, PASSWORD, 'id -u; id -un; echo "home=$HOME"; pwd; getent passwd "$(id -u)"')
        self.assertEqual(p.returncode, 0, f"{p}\n--- sshd log\n{self.log()}")
        lines = p.stdout.splitlines()
        self.assertEqual(lines[:4], [str(self.uid), self.EMAIL, f"home={home}", home], p)
        # Inside the session too, the user database is idmd's (nss-systemd shows the user name
        # as GECOS when the record has no realName).
        self.assertEqual(lines[4], f"{self.EMAIL}:x:{self.uid}:{self.uid}:{self.EMAIL}:{home}:/bin/sh", p)
        # pam_mkhomedir made the home, owned by the customer's uid and private group.
        st = os.stat(home)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (self.uid, self.uid, 0o700))
        # idmd was asked through varlink, not through a file.
        self.assertIn("varlink connection", self.idmd.log_text())

    def test_refusals(self):
        # A customer that is no Unix user has no passwd entry: sshd refuses the login.
        p = self.ssh("bob@example.com", PASSWORD, "id -u")
        self.assertEqual(p.returncode, 255, p)
        self.assertIn("Permission denied", p.stderr)
        # A disabled customer: its record is locked and pam_idm refuses it.
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL, "disabled": True})
        p = self.ssh(self.EMAIL, PASSWORD, "id -u")
        self.assertEqual(p.returncode, 255, p)
        self.idmd.call("setCustomerDisabled", {"publisherId": self.publisher, "email": self.EMAIL,
                                               "disabled": False})
        # No longer a Unix user: not found any more.
        self.idmd.call("setCustomerUnix", {"publisherId": self.publisher, "email": self.EMAIL, "enabled": False})
        p = self.ssh(self.EMAIL, PASSWORD, "id -u")
        self.assertEqual(p.returncode, 255, p)
        # Enabled again: the same uid, and in.
        self.assertEqual(self.idmd.call("setCustomerUnix", {"publisherId": self.publisher, "email": self.EMAIL,
                                                            "enabled": True})["unixUid"], self.uid)
        p = self.ssh(self.EMAIL, PASSWORD, "id -u")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, str(self.uid)), f"{p}\n{self.log()}")
        self.assertIsNone(self.sshd.poll())
        # The host's /run/systemd never saw the socket.
        self.assertFalse(os.path.exists("/run/systemd/userdb/io.idm"))


if __name__ == "__main__":
    main()
