# SPDX-License-Identifier: MIT
"""pam_idm when idmd cannot be used: not running, crashed (a stale socket), stopped (SIGSTOP), a full
backlog, a socket owned by the wrong user or reached through a directory other users control; an
absurd retryAfter; the fallbacks (authinfo_unavail=ignore to pam_matrix, ignore_authinfo_unavail,
user_unknown for non-customer names); the configuration checks; the shared object's exports."""

import os
import signal
import socket
import subprocess
import tempfile

import idmtest
from pamtest import (NOBODY, PAM_IDM, PAM_MATRIX, PASSWORD, FakeIdmd, FakeListener, PamTestCase, error, main,
                     make_reachable)


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

        # A socket file nobody listens on (idmd crashed): idmd is installed and meant to run, so
        # this is not "no such user" for acct_mgmt either (a user_unknown=ignore stack must not
        # let a customer's account check pass by default): unavailable.
        if os.path.exists(self.idmd.socket):
            os.unlink(self.idmd.socket)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.idmd.socket)
        stale.close()
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD_WRONG])
        self.assertTrue(r.logged("Connection refused"), r)
        r = self.ok(svc, self.EMAIL, "acct=PAM_AUTHINFO_UNAVAIL")
        self.assertTrue(r.logged("Connection refused"), r)

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

    def fake_idmd(self, path):
        def handle(method, params):
            return "result", {"customerId": "1234567890", "publisherId": self.publisher, "sessionId": "s1"}
        fake = FakeIdmd(path, handle)
        self.addCleanup(fake.close)
        return fake

    def test_directory_of_another_user(self):
        # A root-owned socket with a root listener, but reached through a directory another
        # unprivileged user owns: that user could have put any root-owned socket (or a symlink to
        # one) there. Nothing is sent.
        evil = os.path.join(self.idmd.tmp, "evil")
        os.mkdir(evil, 0o755)
        os.chown(evil, NOBODY, NOBODY)
        fake = self.fake_idmd(os.path.join(evil, "socket"))
        svc = self.idm_service("idm", socket=fake.path)
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD])
        self.assertIn((3, f"idmd is not available: directory '{evil}' of socket '{fake.path}' is owned by uid "
                          f"{NOBODY}, which is neither root nor idmd's user 'idmd', refusing"), r.syslog, r)
        self.assertEqual(fake.calls, [])
        # The same through a root-owned symlink to that directory.
        link = os.path.join(self.idmd.tmp, "link")
        os.symlink(evil, link)
        svc = self.idm_service("idm-link", socket=os.path.join(link, "socket"))
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD])
        self.assertTrue(r.logged(f"directory '{evil}' .* is owned by uid {NOBODY}"), r)
        # A directory writable by a group.
        os.chown(evil, 0, 0)
        os.chmod(evil, 0o775)
        r = self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD])
        self.assertTrue(r.logged(f"directory '{evil}' of socket .* is writable by group or others"), r)
        self.assertEqual(fake.calls, [])
        # Owned by root and writable by nobody else: accepted, also through the symlink.
        os.chmod(evil, 0o755)
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])
        self.assertEqual([m for m, _ in fake.calls], ["pamAuthenticate"])

    def test_absurd_retry_after(self):
        def handle(method, params):
            return error(423, "account_locked", retryAfter=2 ** 63 - 1)
        fake = FakeIdmd(os.path.join(self.idmd.tmp, "fake-socket"), handle)
        self.addCleanup(fake.close)
        svc = self.idm_service("idm", socket=fake.path)
        r = self.ok(svc, self.EMAIL, "auth=PAM_MAXTRIES", pw=[PASSWORD])
        self.assertEqual(r.errors, ["This account is locked after too many failed attempts. Try again later."], r)
        self.assertNotIn("runtime error", r.stderr)


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

    def test_socket_path_too_long(self):
        # Longer than sun_path: a configuration error (fail closed), not an unavailable idmd that
        # ignore_authinfo_unavail would skip.
        path = "/" + "s" * 107
        svc = self.idm_service("idm", "ignore_authinfo_unavail", socket=path)
        r = self.ok(svc, self.EMAIL, "auth=PAM_SERVICE_ERR", pw=[PASSWORD])
        self.assertTrue(r.logged(f"socket path '{path}' is longer than 107 bytes"), r)
        self.ok(svc, self.EMAIL, "acct=PAM_SERVICE_ERR")
        self.ok(svc, self.EMAIL, "open=PAM_SERVICE_ERR")
        # 107 bytes fit: that socket just does not exist.
        svc = self.idm_service("idm-107", socket=path[:-1])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD])

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
