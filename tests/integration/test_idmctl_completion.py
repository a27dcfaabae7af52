#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""idmctl's bash completion, sourced into a real bash: every command, subcommand and option that
"idmctl --help" lists is offered, file names after the options that take a file, and for
"idmctl call" the method names of the real idmd on the socket named on the line (nothing, and no
noise, when there is none there); and "meson install --destdir" puts the script into the
completions directory the build chose, where it works the same."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from idmtest import IDMCTL, IdmdTestCase, main

COMPLETION = os.environ.get("IDMCTL_COMPLETION", os.path.join(os.path.dirname(__file__), "..", "..", "idmctl",
                                                                "idmctl.bash-completion"))


def complete(*words, script=COMPLETION, cwd=None):
    """What _idmctl offers for the command line words (the last one is being completed)."""
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _idmctl; '
                        'printf "%s\\n" "${COMPREPLY[@]}"', "bash", script] + list(words),
                       capture_output=True, text=True, timeout=60, cwd=cwd)
    assert p.returncode == 0 and p.stderr == "", (words, p.returncode, p.stderr)
    return [w for w in p.stdout.split("\n") if w]


def help_commands():
    """[(command, subcommand or None)] from idmctl --help."""
    out = subprocess.run([IDMCTL, "--help"], capture_output=True, text=True, check=True).stdout
    section = out.split("Commands:\n")[1].split("\n\n")[0]
    cmds = []
    for line in section.splitlines():
        words = line.split()
        sub = words[1] if len(words) > 1 and re.fullmatch(r"[a-z][a-z-]*", words[1]) else None
        cmds.append((words[0], sub))
    return cmds


def help_options():
    out = subprocess.run([IDMCTL, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(?m)^\s+(?:-h )?(--[a-z-]+)", out))


class Completion(unittest.TestCase):
    def test_commands_and_subcommands(self):
        cmds = help_commands()
        verbs = sorted({c for c, _ in cmds})
        self.assertIn("consents", verbs)
        self.assertEqual(sorted(set(complete("idmctl", "")) - {"help"}), verbs)
        self.assertEqual(complete("idmctl", "cu"), ["customer"])
        self.assertEqual(complete("idmctl", "co"), ["consents"])
        self.assertEqual(complete("idmctl", "--json", "cu"), ["customer"])
        for verb in verbs:
            subs = sorted(s for c, s in cmds if c == verb and s)
            if subs:
                self.assertEqual(sorted(complete("idmctl", verb, "")), subs, verb)
                self.assertEqual(sorted(complete("idmctl", "help", verb, "")), subs, verb)
        self.assertEqual(complete("idmctl", "consents", "s"), ["show", "set"])
        self.assertEqual(complete("idmctl", "--socket", "/x", "consents", "s"), ["show", "set"])
        # nothing after a complete command
        self.assertEqual(complete("idmctl", "status", ""), [])
        self.assertEqual(complete("idmctl", "customer", "show", "x", ""), [])

    def test_options(self):
        offered = set()
        for verb, sub in help_commands():
            offered |= set(complete("idmctl", verb, *([sub] if sub else []), "--"))
        self.assertEqual(help_options() - offered, set())
        self.assertEqual(complete("idmctl", "--so"), ["--socket"])
        self.assertEqual(complete("idmctl", "consents", "set", "--f"), ["--file"])
        self.assertEqual(complete("idmctl", "consents", "show", "--f"), [])
        self.assertEqual(sorted(complete("idmctl", "customer", "list", "--pub")),
                         ["--publisher", "--publisher-token-file"])
        self.assertIn("--list", complete("idmctl", "call", "--"))
        self.assertIn("--name", complete("idmctl", "publisher", "update", "1", "--"))
        self.assertNotIn("--name", complete("idmctl", "publisher", "create", "--"))

    def test_file_arguments(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("consents.json", "token"):
                open(os.path.join(d, name), "w").close()
            self.assertEqual(complete("idmctl", "consents", "set", "--file", "con", cwd=d), ["consents.json"])
            self.assertEqual(sorted(complete("idmctl", "consents", "set", "--file", "", cwd=d)),
                             ["-", "consents.json", "token"])
            self.assertEqual(complete("idmctl", "customer", "list", "--publisher-token-file", "to", cwd=d), ["token"])
            self.assertEqual(complete("idmctl", "--socket", "=", "to", cwd=d), ["token"])
            # an option's argument is no command: "--file status" does not make status the command
            self.assertEqual(complete("idmctl", "--file", "x", "cu", cwd=d), ["customer"])
        self.assertEqual(complete("idmctl", "--publisher", ""), [])

    @unittest.skipUnless(shutil.which("meson") and os.environ.get("MESON_BUILD_DIR"), "needs meson and the build")
    def test_installed(self):
        build = os.environ["MESON_BUILD_DIR"]
        completions = os.environ["BASH_COMPLETIONS_DIR"]
        self.assertTrue(completions.endswith("/bash-completion/completions"), completions)
        with tempfile.TemporaryDirectory() as dest:
            p = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            installed = os.path.join(dest + completions, "idmctl")     # completions is absolute
            with open(installed) as f, open(COMPLETION) as g:
                self.assertEqual(f.read(), g.read())
            self.assertEqual(complete("idmctl", "consents", "s", script=installed), ["show", "set"])


class MethodNames(IdmdTestCase):
    def test_call_completes_method_names(self):
        methods = self.idmd.call("getServerInfo")["methods"]
        got = complete(IDMCTL, "--socket", self.idmd.socket, "call", "get")
        self.assertEqual(got, [m for m in methods if m.startswith("get")])
        self.assertIn("getPublisherConsents", got)
        self.assertEqual(complete(IDMCTL, "call", "--socket", self.idmd.socket, ""), methods)
        self.assertEqual(complete(IDMCTL, "--socket=" + self.idmd.socket, "call", "setP"), ["setPublisherConsents"])
        # IDM_SOCKET, as idmctl itself reads it
        env = dict(os.environ, IDM_SOCKET=self.idmd.socket)
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                            'source "$1"; COMP_WORDS=("$2" call listP); COMP_CWORD=2; _idmctl; '
                            'printf "%s\\n" "${COMPREPLY[@]}"', "bash", COMPLETION, IDMCTL],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(p.stdout.split(), ["listPublishers"])
        # only the method itself is completed, not its params
        self.assertEqual(complete(IDMCTL, "--socket", self.idmd.socket, "call", "getStats", ""), [])
        # no daemon there: nothing, quietly (complete() fails on any stderr)
        self.assertEqual(complete(IDMCTL, "--socket", os.path.join(self.idmd.tmp, "nothing"), "call", ""), [])
        self.idmd.stop()
        self.assertEqual(complete(IDMCTL, "--socket", self.idmd.socket, "call", "get"), [])


if __name__ == "__main__":
    main()
