# SPDX-License-Identifier: MIT
"""meson install, as a Debian package build does it (-Dprefix=/usr), into a DESTDIR: every file
where Debian 12 expects it, with its mode; the systemd units pass systemd-analyze verify and name
the installed daemon and socket; and the installed pam_idm.so is loaded by libpam by its bare
name (as /etc/pam.d files and pam-auth-update name it) from libpam's own module directory,
which a private mount namespace makes the DESTDIR's (nothing of the host is changed)."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from pamtest import PASSWORD, PamTestCase, main

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PAMDIR = "/lib/x86_64-linux-gnu/security"           # libpam's, from pam.pc's libdir

# Path in the DESTDIR -> mode.
EXPECTED = {
    "etc/idm/idmd.conf": 0o644,
    "etc/idm/pam_idm.conf": 0o644,
    "lib/systemd/system/idmd.service": 0o644,
    "lib/systemd/system/idmd.socket": 0o644,
    "lib/systemd/system/idmd-userdb.socket": 0o644,
    "lib/systemd/system/idm-metrics.service": 0o644,
    "lib/systemd/system/idm-metrics.timer": 0o644,
    "lib/x86_64-linux-gnu/security/pam_idm.so": 0o755,
    "usr/bin/idmctl": 0o755,
    "usr/lib/systemd/catalog/idm.catalog": 0o644,
    "usr/lib/sysusers.d/idmd.conf": 0o644,
    "usr/lib/tmpfiles.d/idmd.conf": 0o644,
    "usr/sbin/idmd": 0o755,
    "usr/share/bash-completion/completions/idmctl": 0o644,
    "usr/share/man/man1/idmctl.1": 0o644,
    "usr/share/man/man5/idmd.conf.5": 0o644,
    "usr/share/man/man8/idmd.8": 0o644,
    "usr/share/man/man8/pam_idm.8": 0o644,
    "usr/share/pam-configs/idm": 0o644,
}


def with_bind_mounts(binds):
    """A wrapper for a command (PamTestCase.drive()'s wrapper=): runs it in a private mount
    namespace where each host path in binds shows the directory it maps to; the host's are
    untouched. Needs root."""
    mounts = " && ".join(f'mount --bind "{src}" "{dst}"' for dst, src in binds.items())
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh"]


def with_module_dir(root):
    """with_bind_mounts(): libpam's module directory is root's (a DESTDIR or an unpacked package)."""
    return with_bind_mounts({os.path.realpath(PAMDIR): os.path.join(root, PAMDIR.lstrip("/"))})


class Install(PamTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="idm-install-")
        os.chmod(cls.tmp, 0o755)
        cls.root = os.path.join(cls.tmp, "root")
        build = os.path.join(cls.tmp, "build")
        for argv in (["meson", "setup", build, SOURCE_ROOT, "-Dprefix=/usr", "-Dtests=disabled", "-Dman=enabled"],
                     ["ninja", "-C", build],
                     ["meson", "install", "-C", build, "--destdir", cls.root, "--no-rebuild"]):
            p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                shutil.rmtree(cls.tmp, ignore_errors=True)
                raise AssertionError(f"{' '.join(argv)} failed:\n{p.stdout}\n{p.stderr}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_files_and_modes(self):
        found = {}
        for d, _, files in os.walk(self.root):
            for f in files:
                path = os.path.join(d, f)
                found[os.path.relpath(path, self.root)] = os.stat(path).st_mode & 0o7777
        self.assertEqual(found, EXPECTED)
        with open(os.path.join(SOURCE_ROOT, "packaging", "idmd.conf")) as a, \
                open(os.path.join(self.root, "etc/idm/idmd.conf")) as b:
            self.assertEqual(a.read(), b.read())
        # The installed daemon reads the installed configuration by default.
        p = subprocess.run(["strings", os.path.join(self.root, "usr/sbin/idmd")], capture_output=True, text=True)
        self.assertIn("/etc/idm/idmd.conf", p.stdout)

    def test_journal_catalog(self):
        """journalctl builds its catalogue database from the installed idm.catalog (under
        --root: the DESTDIR's /var, not the host's), and it explains every MESSAGE_ID idmd logs."""
        for args in (["--update-catalog"], ["--list-catalog"]):
            p = subprocess.run(["journalctl", f"--root={self.root}"] + args, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
        listed = dict(line.split(" ", 1) for line in p.stdout.splitlines())
        with open(os.path.join(SOURCE_ROOT, "idmd", "message-ids.h")) as f:
            ids = re.findall(r'#define (IDM_MESSAGE_\w+)\s+"([0-9a-f]{32})"', f.read())
        self.assertGreaterEqual(len(ids), 10)
        self.assertEqual(len({i for _, i in ids}), len(ids), "an ID used twice")
        for name, message_id in ids:
            self.assertIn(message_id, listed, name)
            self.assertTrue(listed[message_id].startswith("idm: "), listed[message_id])
        self.assertEqual(len(listed), len(ids), "a catalogue entry for an ID idmd does not log")
        os.remove(os.path.join(self.root, "var/lib/systemd/catalog/database"))
        os.removedirs(os.path.join(self.root, "var/lib/systemd/catalog"))

    def test_units_verify(self):
        units = os.path.join(self.root, "lib/systemd/system")
        with open(os.path.join(units, "idmd.service")) as f:
            service = f.read()
        with open(os.path.join(units, "idmd.socket")) as f:
            socket_unit = f.read()
        self.assertIn("ExecStart=/usr/sbin/idmd\n", service)
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=idmd", "StateDirectory=idmd",
                     "StateDirectoryMode=0700",
                     "RuntimeDirectory=idmd", "WatchdogSec=", "PrivateNetwork=yes", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX", "SystemCallFilter=@system-service",
                     "MemoryDenyWriteExecute=yes", "LockPersonality=yes", "CapabilityBoundingSet=\n"):
            self.assertIn(line, service)
        self.assertIn("ListenStream=/run/idmd/socket\n", socket_unit)
        self.assertIn("SocketMode=0666\n", socket_unit)
        with open(os.path.join(units, "idmd-userdb.socket")) as f:
            userdb_unit = f.read()
        for line in ("ListenStream=/run/systemd/userdb/io.idm\n", "FileDescriptorName=userdb\n",
                     "Service=idmd.service\n", "SocketMode=0666\n"):
            self.assertIn(line, userdb_unit)
        # verify checks that ExecStart= exists: point it at the DESTDIR's copy.
        check = os.path.join(self.tmp, "verify")
        os.makedirs(check, exist_ok=True)
        with open(os.path.join(check, "idmd.service"), "w") as f:
            f.write(service.replace("ExecStart=/usr/sbin/idmd", f"ExecStart={self.root}/usr/sbin/idmd"))
        shutil.copy(os.path.join(units, "idmd.socket"), check)
        shutil.copy(os.path.join(units, "idmd-userdb.socket"), check)
        shutil.copy(os.path.join(units, "idm-metrics.timer"), check)
        with open(os.path.join(units, "idm-metrics.service")) as f:
            metrics = f.read()
        self.assertIn("/usr/bin/idmctl metrics", metrics)
        with open(os.path.join(check, "idm-metrics.service"), "w") as f:
            f.write(metrics)
        p = subprocess.run(["systemd-analyze", "verify", "--man=no"] +
                           [os.path.join(check, u) for u in ("idmd.service", "idmd.socket", "idmd-userdb.socket",
                                                             "idm-metrics.service", "idm-metrics.timer")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=25",
                            os.path.join(check, "idmd.service")], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        print(p.stdout.strip().splitlines()[-1])

    def test_libpam_loads_the_installed_module_by_name(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root for a private mount namespace")
        # The installed sample configuration, with the publisher set as its comment says.
        with open(os.path.join(self.root, "etc/idm/pam_idm.conf")) as f:
            conf = self.write_conf(f.read() + f"publisher = {self.publisher}\nsocket = {self.idmd.socket}\n",
                                   name="sample.conf")
        svc = self.service("bare", f"auth required pam_idm.so conf={conf}")
        r = self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD], wrapper=with_module_dir(self.root))
        self.assertEqual(r.results, [("auth", "PAM_SUCCESS")], r)
        # The host's directory is untouched: no pam_idm.so there.
        self.assertFalse(os.path.exists(os.path.join(PAMDIR, "pam_idm.so")))


if __name__ == "__main__":
    main()
