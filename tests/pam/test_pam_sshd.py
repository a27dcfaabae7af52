# SPDX-License-Identifier: MIT
"""A real sshd (Debian's openssh-server) on a loopback port, started by the test with its own
config and host key, UsePAM yes and keyboard-interactive authentication, with pam_idm in its PAM
service (pam_wrapper) and the customer's e-mail mapped to a test account through nss_wrapper.
Catches what only a real, forking, privilege-separating PAM application shows: SIGPIPE, fork,
conversation and cross-process session handling. Nothing outside the test's temporary directory
changes, except an empty /run/sshd (sshd's compiled-in privilege separation directory) that is
created if missing. See docs/testing.md."""

import os
import pwd
import shutil
import socket
import subprocess
import time

from pamtest import (NSS_WRAPPER_LIB, PAM_WRAPPER_LIB, PASSWORD, SANITIZED, PamTestCase, main, pam_wrapper_lock,
                     stop_process)

SSHD = "/usr/sbin/sshd"
UID = 4242


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestSshd(PamTestCase):
    NEEDS = ("pamAuthenticate", "pamAccount", "pamCloseSession")

    def setUp(self):
        for tool in (SSHD, shutil.which("ssh"), shutil.which("sshpass"), shutil.which("ssh-keygen")):
            if not tool or not os.path.exists(tool):
                self.skipTest("openssh-server, openssh-client and sshpass are needed")
        if SANITIZED:
            # sshd is not built with ASan, and the module built with it cannot be loaded into it.
            self.skipTest("not under sanitizers")
        if os.geteuid() != 0:
            self.skipTest("sshd needs root")
        super().setUp()
        t = self.idmd.tmp
        self.t = t
        self.home = os.path.join(t, "home")
        os.mkdir(self.home)
        os.chown(self.home, UID, UID)
        try:
            sshd_user = pwd.getpwnam("sshd")
        except KeyError:
            self.skipTest("no sshd user (openssh-server not installed?)")
        with open(os.path.join(t, "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n"
                    f"sshd:x:{sshd_user.pw_uid}:{sshd_user.pw_gid}::/run/sshd:/usr/sbin/nologin\n"
                    f"{self.EMAIL}:x:{UID}:{UID}:Alice:{self.home}:/bin/sh\n")
        with open(os.path.join(t, "group"), "w") as f:
            f.write(f"root:x:0:\nnogroup:x:65534:\nalice:x:{UID}:\n")

        self.service("sshd",
                     f"auth required {self.idm('export_tokens')}",
                     f"account required {self.idm()}",
                     f"password required {self.idm()}",
                     f"session required {self.idm()}")

        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(t, "hostkey")],
                       check=True, stdin=subprocess.DEVNULL)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # the one host path the recipe allows
        self.port = free_port()
        config = os.path.join(t, "sshd_config")
        with open(config, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {t}/hostkey\nUsePAM yes\n"
                    "KbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication no\n"
                    f"PidFile {t}/sshd.pid\nStrictModes no\nLogLevel DEBUG1\nAcceptEnv none\n")
        self.sshd_log = os.path.join(t, "sshd.log")
        env = dict(os.environ)
        env.update(LD_PRELOAD=f"{PAM_WRAPPER_LIB} {NSS_WRAPPER_LIB}", PAM_WRAPPER="1",
                   PAM_WRAPPER_SERVICE_DIR=self.svcdir, NSS_WRAPPER_PASSWD=os.path.join(t, "passwd"),
                   NSS_WRAPPER_GROUP=os.path.join(t, "group"))
        with pam_wrapper_lock():
            self.sshd = subprocess.Popen([SSHD, "-D", "-f", config, "-E", self.sshd_log], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.addCleanup(self.stop_sshd)
            deadline = time.monotonic() + 30
            while True:
                if self.sshd.poll() is not None:
                    self.fail(f"sshd exited with {self.sshd.returncode}:\n{self.log()}")
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.fail(f"sshd did not listen:\n{self.log()}")
                    time.sleep(0.05)

    def stop_sshd(self):
        with pam_wrapper_lock():
            stop_process(self.sshd)

    def log(self):
        try:
            with open(self.sshd_log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def ssh(self, password, command, user=None):
        env = dict(os.environ, SSHPASS=password, HOME=self.t)
        env.pop("LD_PRELOAD", None)
        argv = ["sshpass", "-e", "-P", "assword", "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR", "-p", str(self.port),
                "-l", user or self.EMAIL, "127.0.0.1", command]
        # sshd re-executes itself for every connection: pam_wrapper starts anew each time.
        with pam_wrapper_lock():
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)

    def test_login(self):
        p = self.ssh(PASSWORD, "id -u; echo \"customer=$IDM_CUSTOMER_ID\"; echo \"refresh=$IDM_REFRESH_TOKEN\"")
        self.assertEqual(p.returncode, 0, f"{p}\n--- sshd log\n{self.log()}")
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], str(UID), p)
        # The environment pam_idm exported in sshd's authentication child reached the session.
        self.assertIn(f"customer={self.customer['customerId']}", lines, p)
        refresh = [l.split("=", 1)[1] for l in lines if l.startswith("refresh=")][0]
        self.assertTrue(refresh, p)
        # Logging out ran close_session in sshd's monitor, a process pam_idm never authenticated
        # in: idmd closed the session this uid opened last for the user.
        deadline = time.monotonic() + 10
        while self.idmd.call("introspectToken", {"token": refresh})["active"]:
            self.assertLess(time.monotonic(), deadline, "session not closed after logout")
            time.sleep(0.1)
        self.assertIn("service 'sshd', rhost '127.0.0.1'", self.idmd.log_text())

    def test_wrong_password(self):
        p = self.ssh("Wrong-passw0rd", "id -u")
        self.assertEqual(p.returncode, 255, p)
        self.assertIn("Permission denied", p.stderr, p)
        # sshd survived it (no SIGPIPE, no crash) and still lets the right password in.
        self.assertIsNone(self.sshd.poll())
        p = self.ssh(PASSWORD, "id -u")
        self.assertEqual(p.returncode, 0, f"{p}\n--- sshd log\n{self.log()}")

    def test_idmd_down(self):
        self.idmd.stop()
        p = self.ssh(PASSWORD, "id -u")
        self.assertEqual(p.returncode, 255, p)
        self.assertIsNone(self.sshd.poll())


if __name__ == "__main__":
    main()
