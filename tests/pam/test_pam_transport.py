# SPDX-License-Identifier: MIT
"""pam_idm when idmd cannot be used: not running, stopped (SIGSTOP), a full backlog, a socket owned
by the wrong user; the fallbacks (authinfo_unavail=ignore to pam_matrix, ignore_authinfo_unavail,
user_unknown for non-customer names); the configuration checks; the shared object's exports."""

import os
import signal
import socket
import subprocess
import tempfile

import idmtest
from pamtest import (NOBODY, PAM_IDM, PAM_MATRIX, PASSWORD, FakeListener, PamTestCase, main, make_reachable)


class TestExports(PamTestCase):
    def test_only_pam_sm_exported(self):
        out = subprocess.run(["nm", "-D", "--defined-only", PAM_IDM], capture_output=True, text=True,
                             check=True).stdout
        names = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
        self.assertEqual(names, ["pam_sm_acct_mgmt", "pam_sm_authenticate", "pam_sm_chauthtok",
                                 "pam_sm_close_session", "pam_sm_open_session", "pam_sm_setcred"])

    def test_no_threads_signals_children_or_stdio(self):
        out = subprocess.run(["nm", "-D", "--undefined-only", PAM_IDM], capture_output=True, text=True,
                             check=True).stdout
        imported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
        forbidden = {"fork", "vfork", "clone", "posix_spawn", "system", "popen", "execve", "execv", "execvp",
                     "signal", "sigaction", "alarm", "setitimer", "pthread_create", "printf", "vprintf",
                     "puts", "putchar", "perror", "stdout", "stderr", "write", "syslog", "openlog"}
        self.assertEqual(imported & forbidden, set())
        self.assertIn("pam_syslog", imported)
        self.assertIn("explicit_bzero", imported)


class TestUnavailable(PamTestCase):
    def test_daemon_not_running(self):
        self.idmd.stop()
        svc = self.idm_service("idm")
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG])
        self.assertTrue(r.faildelay, r)
        self.assertTrue(r.logged(r"idmd is not available: cannot access socket .*No such file"), r)
        self.assertLess(r.elapsed, 10)
        # acct_mgmt without idmd: user unknown, so user_unknown=ignore stacks keep local accounts.
        self.ok(svc, self.EMAIL, "acct=PAM_USER_UNKNOWN")
        self.ok(svc, self.EMAIL, "chauthtok=PAM_AUTHINFO_UNAVAIL", pw=["old-Passw0rd"])
        self.ok(svc, self.EMAIL, "open", "close=PAM_SESSION_ERR")

        # A socket file nobody listens on (idmd killed): the same.
        if os.path.exists(self.idmd.socket):
            os.unlink(self.idmd.socket)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.idmd.socket)
        stale.close()
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG])
        self.assertTrue(r.logged("Connection refused"), r)
        self.ok(svc, self.EMAIL, "acct=PAM_USER_UNKNOWN")

        # ignore_authinfo_unavail: PAM_IGNORE, so the module has no say (a stack of it alone fails,
        # as every stack where no module decides does).
        svc = self.idm_service("idm-ignore", "ignore_authinfo_unavail")
        r = self.ok(svc, self.EMAIL, "auth=PAM_PERM_DENIED", pw=[PASSWORD_WRONG])
        self.assertTrue(r.logged("idmd is not available"), r)

    def test_authinfo_unavail_falls_through_to_pam_matrix(self):
        self.idmd.stop()
        passdb = self.matrix_passdb((self.EMAIL, "local-Passw0rd", "fallback"))
        svc = self.service("fallback",
                           f"auth [authinfo_unavail=ignore success=done default=die] {self.idm()}",
                           f"auth required {PAM_MATRIX} passdb={passdb}",
                           f"account [user_unknown=ignore success=ok default=bad] {self.idm()}",
                           f"account required {PAM_MATRIX} passdb={passdb}")
        # pam_idm asks for the password and keeps it as PAM_AUTHTOK; pam_matrix asks again.
        r = self.ok(svc, self.EMAIL, "auth", "acct", pw=["local-Passw0rd", "local-Passw0rd"])
        self.assertTrue(r.logged("idmd is not available"), r)
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["wrong-Passw0rd", "wrong-Passw0rd"])

        # ignore_authinfo_unavail turns it into PAM_IGNORE for a plain "sufficient" line.
        svc = self.service("fallback2",
                           f"auth sufficient {self.idm('ignore_authinfo_unavail')}",
                           f"auth required {PAM_MATRIX} passdb={passdb}")
        self.ok(svc, self.EMAIL, "auth", pw=["local-Passw0rd", "local-Passw0rd"])

    def test_daemon_stopped_times_out(self):
        svc = self.idm_service("idm", "timeout=1", "connect_timeout=1")
        os.kill(self.idmd.proc.pid, signal.SIGSTOP)
        try:
            r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG], timeout=30)
        finally:
            os.kill(self.idmd.proc.pid, signal.SIGCONT)
        self.assertGreaterEqual(r.elapsed, 1.0, r)
        self.assertLess(r.elapsed, 6.0, r)
        self.assertTrue(r.logged(r"no reply from idmd to 'pamAuthenticate' within 1000 ms"), r)

    def test_default_timeout_is_15_seconds(self):
        svc = self.idm_service("idm")
        os.kill(self.idmd.proc.pid, signal.SIGSTOP)
        try:
            r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG], timeout=60)
        finally:
            os.kill(self.idmd.proc.pid, signal.SIGCONT)
        self.assertGreaterEqual(r.elapsed, 15.0, r)
        self.assertLess(r.elapsed, 25.0, r)

    def test_connect_timeout(self):
        path = os.path.join(self.idmd.tmp, "full-socket")
        listener = FakeListener(path)
        self.addCleanup(listener.close)
        svc = self.idm_service("idm", "connect_timeout=0.5", socket=path)
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG])
        self.assertGreaterEqual(r.elapsed, 0.5, r)
        self.assertLess(r.elapsed, 5.0, r)
        self.assertTrue(r.logged("did not accept a connection"), r)

    def test_socket_owned_by_another_user(self):
        # idmd run as an unprivileged user (65534): its socket is owned by that user.
        tmp = tempfile.mkdtemp(prefix="idm-test-nobody-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
        os.chown(tmp, NOBODY, NOBODY)
        make_reachable(tmp)
        other = idmtest.Idmd(tmp=tmp)
        os.chown(other.config, NOBODY, NOBODY)
        self.addCleanup(other.cleanup)
        other.start(args=["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + other.args())
        self.assertEqual(os.lstat(other.socket).st_uid, NOBODY)

        svc = self.idm_service("idm", socket=other.socket)
        for as_nobody in (False, True):
            r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG], as_nobody=as_nobody)
            self.assertIn((3, f"idmd is not available: socket '{other.socket}' is owned by uid {NOBODY}, "
                              "which is neither root nor idmd's user 'idmd', refusing"), r.syslog, r)
        # Named as idmd's user (user=nobody), the same socket is trusted: idmd answers.
        publisher = other.call("createPublisher", {"name": "P", "allowedRedirectUris": []})["publisherId"]
        svc = self.idm_service("idm-nobody", "user=nobody", socket=other.socket, publisher=publisher)
        r = self.ok(svc, self.EMAIL, "auth=PAM_USER_UNKNOWN", pw=[PASSWORD_WRONG])
        self.assertFalse(r.logged("refusing"), r)
        self.assertFalse(r.logged("not available"), r)


class TestConfiguration(PamTestCase):
    def test_not_a_customer_name(self):
        # No idmd needed to know that "root" is not an e-mail address.
        self.idmd.stop()
        svc = self.idm_service("idm")
        self.ok(svc, "root", "auth=PAM_USER_UNKNOWN", pw=[PASSWORD_WRONG])
        self.ok(svc, "root", "acct=PAM_USER_UNKNOWN")
        self.ok(svc, "root", "chauthtok=PAM_USER_UNKNOWN")
        self.ok(svc, "root", "open", "close")
        # ignore_unknown_user: PAM_IGNORE, and the next module decides.
        passdb = self.matrix_passdb(("root", "local-Passw0rd", "idm-ignore"))
        svc = self.service("idm-ignore",
                           f"auth requisite {self.idm('ignore_unknown_user')}",
                           f"auth required {PAM_MATRIX} passdb={passdb}",
                           f"account requisite {self.idm('ignore_unknown_user')}",
                           f"account required {PAM_MATRIX} passdb={passdb}")
        self.ok(svc, "root", "auth", "acct", pw=["local-Passw0rd", "local-Passw0rd"])
        self.ok(svc, "root", "auth=PAM_AUTH_ERR", pw=["nope", "nope"])

    def test_missing_publisher_fails_closed(self):
        svc = self.idm_service("nopub", publisher=False)
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", "setcred=PAM_SERVICE_ERR", pw=[PASSWORD_WRONG])
        self.assertTrue(r.logged("neither publisher= nor offer= given, refusing"), r)
        self.ok(svc, self.EMAIL, "acct=PAM_SERVICE_ERR")
        self.ok(svc, self.EMAIL, "chauthtok=PAM_SERVICE_ERR")
        self.ok(svc, self.EMAIL, "open=PAM_SERVICE_ERR")
        svc = self.idm_service("badmode", "mode=magic")
        self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD_WRONG])

    def test_configuration_file(self):
        # What a pam-auth-update profile relies on: the publisher comes from the file.
        conf = self.write_conf(f"# site settings\npublisher = {self.publisher}\nsocket = {self.idmd.socket}\n"
                               "export_env = yes\n", name="site.conf")
        svc = self.service("site", f"auth required {PAM_IDM} conf={conf}", f"account required {PAM_IDM} conf={conf}")
        if "pamAuthenticate" in self.idmd.call("getServerInfo")["methods"]:
            r = self.ok(svc, self.EMAIL, "auth", "acct", "env", pw=[PASSWORD])
            self.assertEqual(r.env.get("IDM_PUBLISHER_ID"), self.publisher, r)
        # Arguments override the file.
        svc = self.service("site2", f"auth required {PAM_IDM} conf={conf} publisher=999999999")
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])
        # A file others could write is refused: it decides where passwords go.
        os.chmod(conf, 0o666)
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])
        self.assertTrue(r.logged("not a regular file owned by root and writable only by it, refusing"), r)
        os.chmod(conf, 0o644)
        svc = self.service("site3", f"auth required {PAM_IDM} conf={conf}.missing")
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])
        self.assertTrue(r.logged("cannot open configuration"), r)

    def test_unknown_option_logged_and_ignored(self):
        svc = self.idm_service("idm", "frobnicate=1")
        r = self.drive(svc, self.EMAIL, "open")
        self.assertEqual(r.code("open"), "PAM_SUCCESS", r)
        self.assertTrue(r.logged("unknown option 'frobnicate=1', ignoring"), r)

    def test_code_and_device_modes_until_idmd_supports_them(self):
        for mode, method in (("code", "redeemToken"), ("device", "startDeviceLogin")):
            if method in self.idmd.call("getServerInfo")["methods"]:
                continue
            svc = self.idm_service(f"idm-{mode}", f"mode={mode}")
            r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=["ABCD-EFGH"])
            self.assertTrue(r.logged(f"{method}: idmd does not implement this method"), r)


PASSWORD_WRONG = "Wrong-passw0rd"

if __name__ == "__main__":
    main()
