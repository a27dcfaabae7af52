# SPDX-License-Identifier: MIT
"""The Debian packages, built by tools/build-deb.sh as a release would build them: what
dpkg-deb -c and -I show of idmd and libpam-idm (every file with its mode, the computed Depends, the
conffile, the maintainer scripts), lintian without errors and with no warning that
docs/operations.md does not explain; the package's pam_idm.so loaded by libpam by its bare name
and by its full path, signing a customer in at the package's idmd; and libpam-idm's maintainer
scripts with pam-auth-update on stacks in a private mount namespace, where a local account still
logs in when idmd is down. Nothing is installed and nothing of the host's /etc, /run or /var is
touched."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import idmtest
from pamtest import PAM_MATRIX, PASSWORD, PamTestCase, main
from test_install import EXPECTED, PAMDIR, SOURCE_ROOT, with_bind_mounts, with_module_dir

BUILD_DEB = os.path.join(SOURCE_ROOT, "tools", "build-deb.sh")
with open(os.path.join(SOURCE_ROOT, "meson.build")) as _f:
    VERSION = re.search(r"^\s*version:\s*'([^']+)'", _f.read(), re.M).group(1)
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
MODULE = os.path.join(PAMDIR, "pam_idm.so").lstrip("/")

# What meson installs (test_install.EXPECTED), split between the packages: paths and modes as the
# packages hold them. debhelper compresses man pages and makes shared objects 0644.
LIBPAM_IDM_FILES = {MODULE, "usr/share/pam-configs/idm", "usr/share/man/man8/pam_idm.8", "etc/idm/pam_idm.conf"}


def _packaged(files, package):
    out = {f"usr/share/doc/{package}/copyright": 0o644, f"usr/share/doc/{package}/changelog.gz": 0o644}
    for path in files:
        mode = 0o644 if path.endswith(".so") else EXPECTED[path]
        out[path + ".gz" if path.startswith("usr/share/man/") else path] = mode
    return out


PACKAGES = {
    "idmd": _packaged(set(EXPECTED) - LIBPAM_IDM_FILES, "idmd"),
    "libpam-idm": _packaged(LIBPAM_IDM_FILES, "libpam-idm"),
}

out = None      # tools/build-deb.sh's OUTDIR
root = None     # both packages unpacked (dpkg-deb -x)


def setUpModule():
    global out, root
    if not shutil.which("dpkg-buildpackage"):
        raise AssertionError("dpkg-buildpackage not found: ./test.sh installs it (tools/deps.sh), "
                             "or apt-get install dpkg-dev debhelper lintian")
    tmp = tempfile.mkdtemp(prefix="idm-deb-")
    os.chmod(tmp, 0o755)
    out, root = os.path.join(tmp, "out"), os.path.join(tmp, "root")
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck noddebs parallel=2")
    p = subprocess.run([BUILD_DEB, out], capture_output=True, text=True, timeout=780, env=env,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError(f"tools/build-deb.sh failed ({p.returncode}):\n{p.stdout[-20000:]}\n{p.stderr}")
    for package in PACKAGES:
        subprocess.run(["dpkg-deb", "-x", deb(package), root], check=True)
    # The PAM tests below sign in at the package's idmd.
    idmtest.IDMD = os.path.join(root, "usr/sbin/idmd")


def tearDownModule():
    if out:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def deb(package):
    return os.path.join(out, f"{package}_{VERSION}_{ARCH}.deb")


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def mode_of(perms):
    """0o644 from "-rw-r--r--" (dpkg-deb -c); no setuid, setgid or sticky bits are expected."""
    assert re.fullmatch(r"[-dl][-r][-w][-x][-r][-w][-x][-r][-w][-x]", perms), perms
    return sum(1 << (8 - i) for i, c in enumerate(perms[1:]) if c != "-")


def depends(package, field="Depends"):
    """The package names a field mentions, alternatives included."""
    text = dpkg_deb("-f", deb(package), field).strip()
    return {alt.split()[0] for dep in text.split(",") for alt in dep.split("|") if alt.strip()}


class Packages(unittest.TestCase):
    def test_files_owners_and_modes(self):
        for package, expected in PACKAGES.items():
            files = {}
            for line in dpkg_deb("-c", deb(package)).splitlines():
                perms, owner, _size, _date, _time, path = line.split(None, 5)
                self.assertEqual(owner, "root/root", line)
                if perms.startswith("d"):
                    self.assertEqual(mode_of(perms), 0o755, line)
                else:
                    files[os.path.normpath(path)] = mode_of(perms)
            self.assertEqual(files, expected, package)
        with open(os.path.join(SOURCE_ROOT, "packaging", "pam-configs", "idm")) as a, \
                open(os.path.join(root, "usr/share/pam-configs/idm")) as b:
            self.assertEqual(a.read(), b.read())

    def test_control(self):
        for package in PACKAGES:
            fields = dpkg_deb("-f", deb(package), "Package", "Version", "Architecture", "Source")
            self.assertEqual(fields, f"Package: {package}\nVersion: {VERSION}\nArchitecture: {ARCH}\n"
                                     "Source: idm\n")
        # shlibs computed from the binaries, plus what the maintainer scripts run.
        self.assertLessEqual({"libc6", "libsodium23", "libargon2-1", "liblmdb0", "libjansson4", "libsystemd0",
                              "libinih1", "libpam0g", "systemd"}, depends("idmd"))
        self.assertLessEqual({"libc6", "libpam0g", "libjansson4", "libinih1", "libpam-runtime"},
                             depends("libpam-idm"))
        # The module talks to idmd but never links what only the daemon uses.
        self.assertFalse({"libsodium23", "liblmdb0", "libsystemd0"} & depends("libpam-idm"))
        self.assertEqual(depends("libpam-idm", "Recommends"), {"idmd"})
        for package in PACKAGES:
            self.assertFalse({d for d in depends(package) if d.endswith("-dev")}, package)
        self.assertEqual(dpkg_deb("-f", deb("libpam-idm"), "Multi-Arch").strip(), "same")

    def test_conffiles(self):
        self.assertEqual(dpkg_deb("-I", deb("idmd"), "conffiles"), "/etc/idm/idmd.conf\n")
        self.assertIn(" conffiles", dpkg_deb("-I", deb("idmd")))
        self.assertEqual(dpkg_deb("-I", deb("libpam-idm"), "conffiles"), "/etc/idm/pam_idm.conf\n")

    def test_maintainer_scripts_parse(self):
        for package in PACKAGES:
            for script in ("preinst", "postinst", "prerm", "postrm"):
                if f" {script} " in dpkg_deb("-I", deb(package)):
                    text = dpkg_deb("-I", deb(package), script)
                    self.assertEqual(subprocess.run(["sh", "-n"], input=text, text=True).returncode, 0, text)

    def test_idmd_maintainer_scripts(self):
        postinst = dpkg_deb("-I", deb("idmd"), "postinst")
        # The idmd user exists before tmpfiles.d makes /var/lib/idmd idmd's.
        sysusers = postinst.index("systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} idmd.conf")
        tmpfiles = postinst.index("--create idmd.conf")
        self.assertLess(sysusers, tmpfiles)
        blocks = postinst.split("# Automatically added by ")
        # Enabled on installation, started (restarted on upgrade): the socket alone.
        enabled = [b for b in blocks if "deb-systemd-helper enable" in b and "debian-installed" not in b]
        self.assertEqual([re.findall(r"enable '([^']+)'", b) for b in enabled], [["idmd.socket"]])
        self.assertEqual(re.findall(r"deb-systemd-invoke \$_dh_action (.*) >", postinst), ["'idmd.socket'"])
        # Restarted on upgrade only when running; tracked so that purge removes their links.
        self.assertRegex(postinst, r"try-restart .*'idmd\.service'")
        self.assertIn("update-state 'idm-metrics.timer'", postinst)
        prerm = dpkg_deb("-I", deb("idmd"), "prerm")
        self.assertIn("deb-systemd-invoke stop 'idmd.socket'", prerm)
        self.assertIn("deb-systemd-invoke stop idm-metrics.timer idm-metrics.service", prerm)
        self.assertIn("deb-systemd-helper purge", dpkg_deb("-I", deb("idmd"), "postrm"))

    def test_libpam_idm_maintainer_scripts(self):
        postinst = dpkg_deb("-I", deb("libpam-idm"), "postinst")
        prerm = dpkg_deb("-I", deb("libpam-idm"), "prerm")
        self.assertRegex(postinst, r'if \[ "\$1" = "configure" \]; then\n\s*pam-auth-update --package\n')
        self.assertRegex(prerm, r'if \[ "\$1" = "remove" \]; then\n\s*pam-auth-update --package --remove idm\n')

    def test_lintian(self):
        with open(os.path.join(out, "lintian.txt")) as f:
            report = f.read()
        tags = re.findall(r"^([EWI]): [^:]+: (\S+)", report, re.M)
        self.assertFalse([t for level, t in tags if level == "E"], report)
        # Every warning left is explained in the package section of docs/operations.md.
        with open(os.path.join(SOURCE_ROOT, "docs", "operations.md")) as f:
            docs = f.read()
        for level, tag in tags:
            if level == "W":
                self.assertIn(f"`{tag}`", docs, report)


def parse(line):
    """(type, control, module, [args]) of a line of a PAM stack."""
    m = re.fullmatch(r"(\w+)\s+(\[[^]]*\]|\S+)\s+(\S+)(.*)", line.strip())
    return m.group(1), m.group(2), m.group(3), m.group(4).split()


def pam_stack_sandbox(tmp):
    """A wrapper that runs a command over empty copies of /etc/pam.d, /var/lib/pam and
    /usr/share/pam-configs (the last with pam_unix's profile from the host), and those copies:
    pam-auth-update there changes only tmp's directories."""
    dirs = {d: os.path.join(tmp, d.strip("/").replace("/", "_")) for d in
            ("/etc/pam.d", "/var/lib/pam", "/usr/share/pam-configs")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    shutil.copy("/usr/share/pam-configs/unix", dirs["/usr/share/pam-configs"])
    return with_bind_mounts(dirs), dirs


class Module(PamTestCase):
    """pam_idm.so from the package, signing in at idmd from the package."""

    def test_libpam_loads_it_by_name(self):
        if os.geteuid() != 0:
            self.fail("needs root for a private mount namespace")
        svc = self.service("bare", f"auth required pam_idm.so conf={self.conf} socket={self.idmd.socket} "
                                   f"publisher={self.publisher}",
                           f"account required pam_idm.so conf={self.conf} socket={self.idmd.socket} "
                           f"publisher={self.publisher}")
        r = self.ok(svc, self.EMAIL, "auth", "acct", pw=[PASSWORD], wrapper=with_module_dir(root))
        self.assertEqual(r.results, [("auth", "PAM_SUCCESS"), ("acct", "PAM_SUCCESS")], r)
        self.assertFalse(os.path.exists(os.path.join(PAMDIR, "pam_idm.so")))

    def test_libpam_loads_it_by_path(self):
        module = os.path.join(root, MODULE)
        svc = self.service("path", f"auth required {module} conf={self.conf} socket={self.idmd.socket} "
                                   f"publisher={self.publisher}")
        self.ok(svc, self.EMAIL, "auth", pw=[PASSWORD])
        self.ok(svc, self.EMAIL, "auth=PAM_AUTH_ERR", pw=["wrong-" + PASSWORD])
        # Nobody listens on the socket: idmd is down.
        self.idmd.kill()
        self.ok(svc, self.EMAIL, "auth=PAM_AUTHINFO_UNAVAIL", pw=[PASSWORD])

    def pam_auth_update(self, wrapper, *argv):
        p = subprocess.run(wrapper + list(argv), capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_pam_auth_update_keeps_local_logins_when_idmd_is_down(self):
        if os.geteuid() != 0:
            self.fail("needs root for a private mount namespace")
        sandbox, dirs = pam_stack_sandbox(os.path.join(self.idmd.tmp, "pam"))
        stacks = dirs["/etc/pam.d"]
        scripts = os.path.join(self.idmd.tmp, "control")
        subprocess.run(["dpkg-deb", "-e", deb("libpam-idm"), scripts], check=True)

        def common(kind):
            with open(os.path.join(stacks, f"common-{kind}")) as f:
                return [line for line in f.read().splitlines() if line and not line.startswith("#")]

        # The stacks of a system without libpam-idm; then the package is configured and its profile
        # registered, off by default: nothing changes until the administrator enables it.
        self.pam_auth_update(sandbox, "pam-auth-update", "--package", "--force")
        before = {k: common(k) for k in ("auth", "account", "password", "session")}
        shutil.copy(os.path.join(root, "usr/share/pam-configs/idm"), dirs["/usr/share/pam-configs"])
        self.pam_auth_update(sandbox, "sh", "-e", os.path.join(scripts, "postinst"), "configure")
        self.assertEqual({k: common(k) for k in before}, before)
        self.pam_auth_update(sandbox, "pam-auth-update", "--enable", "idm")
        enabled = {k: common(k) for k in before}
        for kind in before:
            self.assertTrue([line for line in enabled[kind] if "pam_idm.so" in line], enabled[kind])
        # pam_unix comes first in auth and password; account is pam_unix's, with pam_idm's check added.
        for kind in ("auth", "password"):
            modules = [parse(line)[2] for line in enabled[kind]]
            self.assertLess(modules.index("pam_unix.so"), modules.index("pam_idm.so"), enabled[kind])
        self.assertIn(("account", "[success=ok user_unknown=ignore ignore=ignore default=bad]", "pam_idm.so", []),
                      [parse(line) for line in enabled["account"]])

        # The enabled stacks with the package's pam_idm.so pointed at idmd, and pam_matrix standing in
        # for pam_unix with a local technician's account (the customer is no local user: the host's
        # pam_unix answers PAM_USER_UNKNOWN, where pam_matrix would also clear PAM_AUTHTOK); other
        # modules (pam_systemd, ...) are left out.
        passdb = self.matrix_passdb(("tech", "local-Passw0rd", "common"))

        def stack(socket, unix=True):
            lines = []
            for kind in before:
                for line in enabled[kind]:
                    kind_, control, module, args = parse(line)
                    if module == "pam_unix.so":
                        if not unix:
                            module, args = PAM_MATRIX, [f"passdb={passdb}"]
                    elif module == "pam_idm.so":
                        module = os.path.join(root, MODULE)
                        args = [f"conf={self.conf}", f"socket={socket}", f"publisher={self.publisher}"] + args
                    elif module not in ("pam_deny.so", "pam_permit.so"):
                        continue
                    lines.append(" ".join([kind_, control, module] + args))
            return self.service("common", *lines)

        self.ok(stack(self.idmd.socket), self.EMAIL, "auth", pw=[PASSWORD])
        self.ok(stack(self.idmd.socket), self.EMAIL, "auth=PAM_AUTH_ERR", pw=["wrong-" + PASSWORD])
        local = stack(self.idmd.socket, unix=False)
        self.ok(local, "tech", "auth", "acct", "open", "close", pw=["local-Passw0rd"])
        self.ok(local, "tech", "auth=PAM_AUTH_ERR", pw=["wrong"])
        # idmd killed, its socket left behind; then no socket at all. The customer cannot sign in,
        # the technician can.
        self.idmd.kill()
        self.ok(stack(self.idmd.socket), self.EMAIL, "auth=PAM_AUTH_ERR", pw=[PASSWORD])
        local = stack(self.idmd.socket, unix=False)
        self.ok(local, "tech", "auth", "acct", "open", "close", pw=["local-Passw0rd"])
        local = stack(os.path.join(self.idmd.tmp, "no-such-socket"), unix=False)
        self.ok(local, "tech", "auth", "acct", "open", "close", pw=["local-Passw0rd"])

        # Removing the package takes pam_idm out of the stacks again.
        self.pam_auth_update(sandbox, "sh", "-e", os.path.join(scripts, "prerm"), "remove")
        self.assertEqual({k: common(k) for k in before}, before)


if __name__ == "__main__":
    main()
