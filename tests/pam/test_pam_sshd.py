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
import select
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


class SshdServer:
    """For a PamTestCase: a real sshd on a free loopback port, PAM's keyboard-interactive only,
    started (under pam_wrapper's lock) with the given command line prefix and environment, and
    stopped at cleanup."""

    def start_sshd(self, t, env, prefix=()):
        self.port = free_port()
        config = os.path.join(t, "sshd_config")
        with open(config, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {t}/hostkey\nUsePAM yes\n"
                    "KbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication no\n"
                    f"PidFile {t}/sshd.pid\nStrictModes no\nLogLevel DEBUG1\nAcceptEnv none\n")
        self.sshd_log = os.path.join(t, "sshd.log")
        with pam_wrapper_lock():
            self.sshd = subprocess.Popen(list(prefix) + [SSHD, "-D", "-f", config, "-E", self.sshd_log], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.addCleanup(self.stop_sshd)
            deadline = time.monotonic() + 120
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


class TestSshd(SshdServer, PamTestCase):
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
        env = dict(os.environ)
        env.update(LD_PRELOAD=f"{PAM_WRAPPER_LIB} {NSS_WRAPPER_LIB}", PAM_WRAPPER="1",
                   PAM_WRAPPER_SERVICE_DIR=self.svcdir, NSS_WRAPPER_PASSWD=os.path.join(t, "passwd"),
                   NSS_WRAPPER_GROUP=os.path.join(t, "group"))
        self.start_sshd(t, env)

    def ssh_args(self, password, command, user=None):
        env = dict(os.environ, SSHPASS=password, HOME=self.t)
        env.pop("LD_PRELOAD", None)
        argv = ["sshpass", "-e", "-P", "assword", "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR", "-p", str(self.port),
                "-l", user or self.EMAIL, "127.0.0.1", command]
        return argv, env

    def ssh(self, password, command, user=None):
        argv, env = self.ssh_args(password, command, user)
        # sshd re-executes itself for every connection: pam_wrapper starts anew each time.
        with pam_wrapper_lock():
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)

    def active(self, token):
        return self.idmd.call("introspectToken", {"token": token})["active"]

    def wait_inactive(self, token, what):
        deadline = time.monotonic() + 60
        while self.active(token):
            self.assertLess(time.monotonic(), deadline, f"{what}: session not closed after logout\n{self.log()}")
            time.sleep(0.1)

    def open_session(self, name):
        """An ssh login that prints its refresh token and session id, then stays logged in until
        the file <t>/logout-<name> appears. Returns (process, refresh token, session id, file)."""
        flag = os.path.join(self.t, f"logout-{name}")
        argv, env = self.ssh_args(PASSWORD, 'echo "refresh=$IDM_REFRESH_TOKEN sid=$IDM_SESSION_ID"; '
                                            f'while [ ! -e {flag} ]; do sleep 0.1; done')
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(self.end_session, p, flag)
        line = b""
        deadline = time.monotonic() + 60
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(left, 0))
            if not ready:
                self.fail(f"login {name}: no output\n--- sshd log\n{self.log()}")
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                self.fail(f"login {name} ended: {p.wait()} {p.stderr.read()}\n--- sshd log\n{self.log()}")
            line += chunk
        fields = dict(f.split("=", 1) for f in line.decode().split(" "))
        self.assertTrue(fields.get("refresh"), line)
        return p, fields["refresh"], fields.get("sid", "").strip(), flag

    def end_session(self, p, flag):
        open(flag, "w").close()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()

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
        # in: the session id came with the PAM environment sshd imported from its child.
        deadline = time.monotonic() + 60
        while self.idmd.call("introspectToken", {"token": refresh})["active"]:
            self.assertLess(time.monotonic(), deadline, "session not closed after logout")
            time.sleep(0.1)
        self.assertIn("service 'sshd', rhost '127.0.0.1'", self.idmd.log_text())

    def test_concurrent_logins_each_logout_closes_its_own_session(self):
        # Two logins of one customer at once; the first to log in logs out first. Its logout must
        # end its own session, not the one opened last (the second), which stays usable.
        with pam_wrapper_lock():
            a, refresh_a, sid_a, flag_a = self.open_session("a")
            b, refresh_b, sid_b, flag_b = self.open_session("b")
        self.assertTrue(self.active(refresh_a) and self.active(refresh_b))
        self.end_session(a, flag_a)
        self.assertEqual(a.returncode, 0, self.log())
        self.wait_inactive(refresh_a, "first login")
        self.assertTrue(self.active(refresh_b), "the second login's session was closed by the first logout")
        self.end_session(b, flag_b)
        self.wait_inactive(refresh_b, "second login")
        # What made it work: each session's id, in the PAM environment sshd imported.
        self.assertTrue(sid_a and sid_b and sid_a != sid_b, (sid_a, sid_b))

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
