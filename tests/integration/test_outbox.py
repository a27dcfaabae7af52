#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The mail outbox through a real idmd: messages queued with the test-only testQueueMail (which
calls outbox_queue() in a unit of work, as the password-reset flow does) are piped to a fake
sendmail (tests/integration/fake-sendmail) that writes each one to a directory, and parsed there
with Python's email package, a parser nobody here wrote: headers, Auto-Submitted, Message-ID,
Date, RFC 2047 subjects, quoted-printable and base64 bodies, the HTML part, placeholders. Also:
the template lookup order; a failing command retried with back-off; kill -9 with a failing
command and a restart with a working one delivers exactly once; SIGTERM with a command in flight
loses nothing; SIGKILL while the command reads a message larger than a pipe holds cuts nothing; the timeout; max_age drops with a log line; header injection is refused with
nothing queued; max_queued; getStats; the admin methods and idmctl outbox/status; admin only."""

import email
import email.policy
import email.utils
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from idmtest import IDMCTL, Idmd, IdmdTestCase, fake_sendmails, main

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake-sendmail")
NOBODY = 65534
LINK = "https://acme.example/reset?token=Zm9vYmFy-secret-token_42"
CODE = "493817"


def wait_for(predicate, timeout=120.0, what="condition"):
    """predicate()'s first true value. The deadline only turns a hang into a failure: it is no
    bound on how fast idmd is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class OutboxTestCase(IdmdTestCase):
    """One idmd per test with the test clock on, its mail going to self.maildir (MODE "ok", or
    "slow": a second before the command reads), or failing ("fail"), or hanging ("hang"). MAIL holds more [mail] keys, TEMPLATES template files."""

    MODE = "ok"
    MAIL = ""
    TEMPLATES = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="idm-outbox-")
        os.chmod(self.tmp, 0o755)  # for the unprivileged clients of the role tests
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.maildir = os.path.join(self.tmp, "mail")
        os.mkdir(self.maildir)
        self.template_dir = os.path.join(self.tmp, "templates")
        os.mkdir(self.template_dir)
        for name, text in (self.TEMPLATES or {}).items():
            with open(os.path.join(self.template_dir, name), "w", encoding="utf-8") as f:
                f.write(text)
        self.idmd = self.make_idmd(self.MODE)
        self.addCleanup(self.kill_hanging)  # should a failed test leave one behind
        self.addCleanup(self.idmd.cleanup)
        self.start()

    def config(self, mode, mail=None):
        command = {"ok": f"{FAKE} {self.maildir} -t -i", "slow": f"{FAKE} --slow {self.maildir} -t -i",
                   "fail": f"{FAKE} --fail", "hang": f"{FAKE} --hang {self.tmp}"}[mode]
        return (f"[mail]\nmail_command = {command}\nfrom = idm@example.com\n"
                f"template_dir = {self.template_dir if self.TEMPLATES else ''}\n"
                + (self.MAIL if mail is None else mail))

    def make_idmd(self, mode, mail=None):
        d = os.path.join(self.tmp, "idmd")
        os.makedirs(d, exist_ok=True)
        return Idmd(self.config(mode, mail), tmp=d)

    def start(self):
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})

    def restart(self, mode, kill=False):
        """Stops idmd (SIGKILL when kill) and starts it again on the same state with mail in mode."""
        if kill:
            self.idmd.kill()
        else:
            self.assertEqual(self.idmd.stop(), 0)
        self.idmd.write_config(self.config(mode))
        self.start()

    def hanging(self):
        """The pids of this test's hanging fake-sendmail processes."""
        return fake_sendmails(f"--hang {self.tmp}")

    def kill_hanging(self):
        for pid in self.hanging():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def queue(self, to="alice@example.com", kind="password-reset", **kw):
        params = {"to": to, "kind": kind}
        params.update(kw)
        return self.idmd.call("testQueueMail", params)

    def queue_error(self, **kw):
        params = {"to": "alice@example.com", "kind": "password-reset", "vars": {}}
        params.update(kw)
        return self.idmd.error("testQueueMail", params)

    def reset_vars(self, **kw):
        v = {"link": LINK, "email": "alice@example.com", "publisherName": "Acme TV", "expiresMinutes": 30}
        v.update(kw)
        return v

    def delivered(self):
        return sorted((f for f in os.listdir(self.maildir) if f.endswith(".eml")), key=lambda f: int(f[:-4]))

    def wait_delivered(self, n=1):
        wait_for(lambda: len(self.delivered()) >= n, what=f"{n} delivered messages")
        return [self.message(i + 1) for i in range(n)]

    def message(self, n):
        with open(os.path.join(self.maildir, f"{n}.eml"), "rb") as f:
            raw = f.read()
        return email.message_from_bytes(raw, policy=email.policy.default), raw

    def outbox(self):
        return self.idmd.call("getStats")["outbox"]

    def items(self):
        return self.idmd.call("listOutbox")["items"]

    def idmctl(self, *args, check=True):
        r = subprocess.run([IDMCTL, "--socket", self.idmd.socket] + list(args), capture_output=True, text=True,
                           timeout=60)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r


class Delivery(OutboxTestCase):
    def test_message_parsed_by_pythons_email_package(self):
        before = time.time()
        self.queue(vars=self.reset_vars(publisherName="Ačme TV"), publisherId="123456789", locale="en_GB")
        (msg, raw), = self.wait_delivered()
        self.assertEqual(str(msg["To"]), "alice@example.com")
        self.assertEqual(msg["From"].addresses[0].display_name, "Ačme TV")
        self.assertEqual(msg["From"].addresses[0].addr_spec, "idm@example.com")
        self.assertEqual(str(msg["Subject"]), "Ačme TV: Reset your password")
        self.assertIn(b"Subject: =?UTF-8?B?", raw)  # RFC 2047, not raw UTF-8
        self.assertEqual(str(msg["Auto-Submitted"]), "auto-generated")
        self.assertRegex(str(msg["Message-ID"]), r"^<[0-9]{14}\.[A-Za-z0-9_-]{22}@example\.com>$")
        date = email.utils.parsedate_to_datetime(str(msg["Date"])).timestamp()
        self.assertLessEqual(abs(date - before), 60)
        self.assertEqual(msg["MIME-Version"], "1.0")
        self.assertEqual(msg.get_content_type(), "text/plain")
        self.assertEqual(msg.get_content_charset(), "utf-8")
        self.assertEqual(msg["Content-Transfer-Encoding"], "quoted-printable")
        body = msg.get_content()
        self.assertIn(LINK, body)
        self.assertIn("within 30 minutes", body)
        self.assertIn("the account alice@example.com at Ačme TV.", body)
        self.assertNotIn("{{", body)
        self.assertNotIn("enter this code", body)  # no code given: its section is left out
        self.assertTrue(all(len(line) <= 76 for line in raw.split(b"\n")), raw)
        self.assertNotIn(b"\r", raw)  # LF line endings for a local sendmail
        # The command and its environment.
        with open(os.path.join(self.maildir, "1.argv")) as f:
            self.assertEqual(json.load(f), [self.maildir, "-t", "-i"])
        with open(os.path.join(self.maildir, "1.env")) as f:
            env = json.load(f)
        self.assertEqual(env.get("PATH"), "/usr/sbin:/usr/bin:/sbin:/bin")
        self.assertNotIn("IDMD_TEST_CLOCK", env)
        # Gone from the outbox, counted, and no secret in the log.
        wait_for(lambda: self.outbox()["depth"] == 0, what="an empty outbox")
        stats = self.outbox()
        self.assertEqual((stats["delivered"], stats["failedAttempts"], stats["oldestAge"]), (1, 0, None))
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["outbox"], 0)
        self.assertNotIn("secret-token", self.idmd.log_text())

    def test_code_and_seven_bit(self):
        self.queue(vars={"code": CODE, "email": "bob@example.com", "expiresMinutes": 10}, to="bob@example.com")
        (msg, raw), = self.wait_delivered()
        self.assertEqual(msg["Content-Transfer-Encoding"], "7bit")
        self.assertEqual(str(msg["Subject"]), "Reset your password")
        self.assertNotIn(b"From: \"", raw)  # no publisherName, no display name
        body = msg.get_content()
        self.assertIn(f"    {CODE}\n", body)
        self.assertIn("within 10 minutes", body)
        self.assertNotIn("open this link", body)

    def test_fifo(self):
        for i in range(5):
            self.queue(to=f"user{i}@example.com", vars={"code": str(i)})
        msgs = self.wait_delivered(5)
        self.assertEqual([str(m["To"]) for m, _ in msgs], [f"user{i}@example.com" for i in range(5)])

    def test_unknown_kind(self):
        self.assertError(self.queue_error(kind="welcome"), 404, "not_found")
        self.assertEqual(self.outbox()["depth"], 0)


class Templates(OutboxTestCase):
    TEMPLATES = {
        "password-reset.txt": "generic {{code}}\n",
        "password-reset.subject": "Generic subject for {{publisherName}}\n",
        "password-reset.111111111.txt": "publisher {{code}}\n",
        "password-reset.de_DE.txt": "locale {{code}}\n",
        "password-reset.de_DE.subject": "Passwort zurücksetzen\n",
        "password-reset.111111111.de_DE.txt": "both {{code}} {{publisherName}}\n",
        "password-reset.111111111.de_DE.html": "<p>both <b>{{code}}</b> {{publisherName}}</p>\n",
        "welcome.txt": "Καλώς ήρθατε στο {{publisherName}}, {{email}}! Αυτό το μήνυμα είναι ελληνικό.\n",
        "README": "not a template, ignored\n",
    }

    def test_lookup_order(self):
        cases = [  # (publisherId, locale) -> (body, subject)
            ("111111111", "de_DE", "both 1 <Acme & Co>", "Passwort zurücksetzen"),
            ("111111111", "fr_FR", "publisher 2", "Generic subject for <Acme & Co>"),
            ("222222222", "de_DE", "locale 3", "Passwort zurücksetzen"),
            ("222222222", None, "generic 4", "Generic subject for <Acme & Co>"),
            (None, None, "generic 5", "Generic subject for <Acme & Co>"),
        ]
        for i, (pub, locale, _, _) in enumerate(cases):
            params = {"vars": {"code": str(i + 1), "publisherName": "<Acme & Co>"}}
            if pub:
                params["publisherId"] = pub
            if locale:
                params["locale"] = locale
            self.queue(**params)
        msgs = self.wait_delivered(len(cases))
        for (msg, raw), (pub, locale, body, subject) in zip(msgs, cases):
            self.assertEqual(str(msg["Subject"]), subject, (pub, locale))
            plain = msg.get_body(preferencelist=("plain",)).get_content()
            self.assertEqual(plain, body + "\n", (pub, locale))
            if pub == "111111111" and locale == "de_DE":
                self.assertEqual(msg.get_content_type(), "multipart/alternative")
                html = msg.get_body(preferencelist=("html",))
                self.assertEqual(html.get_content_type(), "text/html")
                self.assertEqual(html.get_content(), "<p>both <b>1</b> &lt;Acme &amp; Co&gt;</p>\n")
                self.assertEqual(len(list(msg.iter_parts())), 2)
            else:
                self.assertEqual(msg.get_content_type(), "text/plain")

    def test_base64_for_mostly_non_ascii(self):
        self.queue(kind="welcome", vars={"publisherName": "Ακμή", "email": "alice@example.com"})
        (msg, raw), = self.wait_delivered()
        self.assertEqual(msg["Content-Transfer-Encoding"], "base64")
        self.assertEqual(msg.get_content(), "Καλώς ήρθατε στο Ακμή, alice@example.com! Αυτό το μήνυμα είναι ελληνικό.\n")
        self.assertEqual(str(msg["Subject"]), "welcome")  # no subject template: the kind


class Retries(OutboxTestCase):
    MODE = "fail"
    MAIL = "retry_initial = 2s\nretry_max = 1h\n"

    def test_backoff_doubles(self):
        # Failure k (attempts becoming k) happened after the queueing and the last poll that
        # still saw fewer (its start: lo[k]), and before the end of the first poll that saw k or
        # more (hi[k]). The gaps are bounded from both sides by these, so a test process stalled
        # between two polls only widens the bounds: it cannot make a correct back-off look short.
        queued = time.monotonic()
        self.queue(vars=self.reset_vars())
        lo, hi = {1: queued, 2: queued, 3: queued}, {}
        deadline = time.monotonic() + 120
        while len(hi) < 3:
            self.assertLess(time.monotonic(), deadline, f"failures seen at {hi}")
            sent = time.monotonic()
            attempts = self.items()[0]["attempts"]
            answered = time.monotonic()
            for k in (1, 2, 3):
                if attempts < k:
                    lo[k] = sent
                else:
                    hi.setdefault(k, answered)
            time.sleep(0.02)
        # 2 s after the first failure, 4 s after the second (each gap also holds one run of the
        # command, whatever a loaded machine makes of it): the second is 2 s longer.
        longest = [hi[2] - lo[1], hi[3] - lo[2]]
        shortest = [lo[2] - hi[1], lo[3] - hi[2]]
        self.assertGreater(longest[0], 1.8, (shortest, longest))
        self.assertGreater(longest[1] - shortest[0], 1.0, (shortest, longest))
        item = self.items()[0]
        self.assertEqual(item["lastError"],
                         "exit status 75: fake-sendmail: 451 temporary failure, try again")
        self.assertGreaterEqual(self.outbox()["failedAttempts"], 3)
        self.assertIn("failed (attempt 1): exit status 75", self.idmd.log_text())
        self.assertEqual(self.delivered(), [])
        self.assertEqual(self.outbox()["depth"], 1)

    def test_kill9_then_a_working_command_delivers_exactly_once(self):
        self.queue(vars=self.reset_vars())
        wait_for(lambda: self.items()[0]["attempts"] >= 2, what="two failed attempts")
        self.restart("ok", kill=True)
        self.wait_delivered(1)
        wait_for(lambda: self.outbox()["depth"] == 0, what="an empty outbox")
        time.sleep(1.5)
        self.assertEqual(self.delivered(), ["1.eml"])
        # And again: nothing left to send after another restart.
        self.restart("ok")
        time.sleep(1.5)
        self.assertEqual(self.delivered(), ["1.eml"])
        msg, _ = self.message(1)
        self.assertIn(LINK, msg.get_content())

    def test_max_age_drops_with_a_log_line(self):
        self.queue(vars=self.reset_vars())
        item = self.items()[0]
        self.idmd.call("testAdvanceClock", {"seconds": 3 * 86400 + 60})
        # The next try finds it too old: at once when asked, or at its own retry (2 s), which may
        # come first (then nothing is left to retry).
        self.assertIn(self.idmd.call("retryOutbox", {})["retried"], (0, 1))
        wait_for(lambda: self.outbox()["depth"] == 0, what="the message dropped")
        self.assertEqual(self.outbox()["expired"], 1)
        self.assertIn(f"Outbox message {item['id']} dropped undelivered: older than max_age (259200 s).",
                      self.idmd.log_text())
        self.assertEqual(self.delivered(), [])


class Timeout(OutboxTestCase):
    MODE = "hang"
    MAIL = "timeout = 1s\nretry_initial = 1h\n"

    def test_killed_after_the_timeout(self):
        self.queue(vars=self.reset_vars())
        wait_for(lambda: self.items()[0]["attempts"] == 1, what="the timed out attempt")
        self.assertEqual(self.items()[0]["lastError"], "timed out, killed")
        # Its process group was killed: no fake-sendmail is left.
        self.assertEqual(self.hanging(), [])


class Stop(OutboxTestCase):
    MODE = "hang"
    MAIL = "timeout = 1h\nretry_initial = 1h\nretry_max = 2h\n"

    def test_sigterm_with_a_command_in_flight_loses_nothing(self):
        self.queue(vars=self.reset_vars())
        wait_for(lambda: self.outbox()["inFlight"], what="a delivery in flight")
        start = time.monotonic()
        self.restart("ok")  # SIGTERM: the command is killed after the grace, the message stays
        # not the command's hour: the grace of 5 s, and a start (a loaded machine's figures)
        self.assertLess(time.monotonic() - start, 60)
        self.assertIn("Waiting up to 5 s for the mail command in flight.", self.idmd.log_text())
        # Killed by the stop: no failed attempt recorded, no back-off; due at once after the start.
        self.assertIn("interrupted by the stop; it is tried again at the next start.", self.idmd.log_text())
        self.wait_delivered(1)
        wait_for(lambda: self.outbox()["depth"] == 0, what="an empty outbox")
        self.assertEqual(self.delivered(), ["1.eml"])


class KillWhileReading(OutboxTestCase):
    """SIGKILL of idmd while the mail command reads a message larger than a pipe holds (64 KiB):
    the command still gets all of it, because its standard input is a file holding the whole
    message, not a pipe idmd feeds as it goes (with the pipe, the kill cut the message short and
    the command took the short copy); the copy sent after the restart is the same bytes. The
    command waits a second before it reads, so that the kill comes first (a quick one could
    finish before the test saw it running)."""

    MODE = "slow"
    TEMPLATES = {"big.txt": "".join(f"text line {i:05d} of a long message {{{{code}}}}\n" for i in range(1300)),
                 "big.html": "".join(f"<p>html line {i:05d} of a long message {{{{code}}}}</p>\n" for i in range(1300))}

    def test_kill_while_the_command_reads(self):
        self.queue(kind="big", vars={"code": "424242"})
        wait_for(lambda: fake_sendmails(f"--slow {self.maildir} "), what="the mail command started")
        self.idmd.kill()
        wait_for(lambda: not fake_sendmails(f"--slow {self.maildir} "), what="the mail command done")
        self.assertEqual(len(glob.glob(os.path.join(self.maildir, "*.eml"))), 1)
        self.restart("ok", kill=True)     # idmd is dead already: starts it again
        (first, raw1), (second, raw2) = self.wait_delivered(2)
        self.assertGreater(len(raw1), 96 * 1024)     # more than a pipe holds
        self.assertEqual(raw1, raw2)
        self.assertEqual(first["Message-ID"], second["Message-ID"])


class Reload(OutboxTestCase):
    """SIGHUP applies a new [mail] at once; a delivery under way finishes with the command it
    started with; a [mail] that does not load changes nothing."""
    MODE = "hang"
    MAIL = "timeout = 1h\nretry_initial = 1h\n"

    def reload(self, config, expect):
        self.idmd.write_config(config)
        seen = self.idmd.log_text().count(expect)
        self.idmd.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.idmd.log_text().count(expect) > seen, what=expect)

    def test_sighup_changes_the_command_and_sender(self):
        self.queue(to="first@example.com", vars=self.reset_vars())
        wait_for(lambda: self.outbox()["inFlight"], what="a delivery in flight")
        self.reload(self.config("ok", "retry_initial = 1h\n").replace("idm@example.com", "new@example.com"),
                    "Configuration reloaded")
        self.assertNotIn("applied only at the next start", self.idmd.log_text())
        self.queue(to="second@example.com", vars=self.reset_vars())
        # The hanging command was not replaced under the delivery: it is still there. Ended, the
        # attempt fails and waits an hour; the second message goes through the new command.
        self.assertEqual(len(self.hanging()), 1)
        self.kill_hanging()
        (msg, _), = self.wait_delivered(1)
        self.assertEqual(str(msg["To"]), "second@example.com")
        self.assertEqual(msg["From"].addresses[0].addr_spec, "new@example.com")
        # Written by the command before idmd records it delivered: wait for the record.
        wait_for(lambda: self.outbox()["depth"] == 1, what="the second message recorded delivered")
        self.assertEqual(self.items()[0]["attempts"], 1)
        self.assertEqual(self.idmd.call("retryOutbox", {})["retried"], 1)
        msgs = self.wait_delivered(2)
        self.assertEqual(str(msgs[1][0]["To"]), "first@example.com")
        # A template_dir that cannot be read: the running [mail] stays.
        self.reload(self.config("fail").replace(f"template_dir = \n", "template_dir = /nonexistent\n"),
                    "keeping the running configuration")
        self.assertIn("template_dir: cannot read /nonexistent", self.idmd.log_text())
        self.queue(to="third@example.com", vars=self.reset_vars())
        msgs = self.wait_delivered(3)
        self.assertEqual(str(msgs[2][0]["To"]), "third@example.com")


class Refusals(OutboxTestCase):
    MODE = "fail"
    MAIL = "max_queued = 2\nretry_initial = 1h\n"

    def assertNothingQueued(self, error):
        self.assertError(error, 400, "invalid_value")
        self.assertEqual(self.outbox()["depth"], 0)

    def test_header_injection_refused_nothing_queued(self):
        for to in ("alice@example.com\r\nBcc: eve@example.com", "alice@example.com\nBcc: eve@example.com",
                   "alice@example.com, eve@example.com", "Alice <alice@example.com>", "alice@example.com\r",
                   "", "alice"):
            self.assertNothingQueued(self.queue_error(to=to))
        for name in ("Acme\r\nBcc: eve@example.com", "Acme\nX-Evil: 1", "Acme\x1b[2J", "Acme\x7f"):
            self.assertNothingQueued(self.queue_error(vars=self.reset_vars(publisherName=name)))
        self.assertNothingQueued(self.queue_error(vars=self.reset_vars(link=LINK + "\r\n")))
        self.assertNothingQueued(self.queue_error(vars={"link": ["not", "a", "string"]}))
        self.assertNothingQueued(self.queue_error(vars={"link": "x" * 5000}))
        self.assertNothingQueued(self.queue_error(kind="../../etc/passwd"))
        self.assertNothingQueued(self.queue_error(locale="de_DE/../x"))
        self.assertEqual(self.idmd.call("getStats")["store"]["entries"]["outbox"], 0)

    def test_max_queued(self):
        self.queue(vars=self.reset_vars())
        self.queue(vars=self.reset_vars())
        self.assertError(self.queue_error(), 503, "store_full")
        self.assertError(self.queue_error(to="eve@example.com\r\nBcc: x@example.com"), 400, "invalid_value")
        self.assertEqual(self.outbox()["depth"], 2)
        self.idmd.call("dropOutbox", {"id": self.items()[0]["id"]})
        self.queue(vars=self.reset_vars())
        self.assertEqual(self.outbox()["depth"], 2)


class Admin(OutboxTestCase):
    MODE = "fail"
    MAIL = "retry_initial = 1h\nretry_max = 2h\n"

    def test_list_retry_drop(self):
        for i in range(3):
            self.queue(to=f"user{i}@example.com", publisherId="123456789", locale="en_GB",
                       vars=self.reset_vars())
        wait_for(lambda: all(i["attempts"] == 1 for i in self.items()), what="one attempt each")
        items = self.items()
        self.assertEqual([i["to"] for i in items], ["user0@example.com", "user1@example.com", "user2@example.com"])
        self.assertEqual(sorted(items[0]), ["attempts", "created", "id", "kind", "lastError", "locale", "nextAttempt",
                                            "publisherId", "to"])
        self.assertEqual((items[0]["kind"], items[0]["publisherId"], items[0]["locale"]),
                         ("password-reset", "123456789", "en_GB"))
        self.assertRegex(items[0]["id"], r"^[0-9a-f]{16}$")
        self.assertEqual(items, sorted(items, key=lambda i: i["id"]))
        self.assertNotIn("secret", json.dumps(items))
        # Paging.
        page = self.idmd.call("listOutbox", {"limit": 2})
        self.assertEqual([i["id"] for i in page["items"]], [i["id"] for i in items[:2]])
        rest = self.idmd.call("listOutbox", {"limit": 2, "cursor": page["cursor"]})
        self.assertEqual(([i["id"] for i in rest["items"]], rest["cursor"]), ([items[2]["id"]], None))
        self.assertError(self.idmd.error("listOutbox", {"limit": 0}), -32602)
        # Retry one: it is tried again now.
        self.assertEqual(self.idmd.call("retryOutbox", {"id": items[1]["id"]}), {"retried": 1})
        wait_for(lambda: self.items()[1]["attempts"] == 2, what="the retried attempt")
        self.assertEqual([i["attempts"] for i in self.items()], [1, 2, 1])
        self.assertError(self.idmd.error("retryOutbox", {"id": "0000000000000000"}), 404, "not_found")
        self.assertError(self.idmd.error("retryOutbox", {"id": "nonsense"}), 404, "not_found")
        # Drop one.
        self.assertEqual(self.idmd.call("dropOutbox", {"id": items[0]["id"]}), {})
        self.assertError(self.idmd.error("dropOutbox", {"id": items[0]["id"]}), 404, "not_found")
        self.assertEqual([i["id"] for i in self.items()], [items[1]["id"], items[2]["id"]])
        stats = self.outbox()
        self.assertEqual((stats["depth"], stats["dropped"]), (2, 1))
        self.assertGreaterEqual(stats["oldestAge"], 0)
        self.assertIn(f"outbox message {items[0]['id']} dropped undelivered (uid 0)", self.idmd.log_text())

    def test_oldest_age_with_the_clock(self):
        self.queue(vars=self.reset_vars())
        self.idmd.call("testAdvanceClock", {"seconds": 3600})
        self.assertGreaterEqual(self.outbox()["oldestAge"], 3600)
        self.assertLess(self.outbox()["oldestAge"], 3700)

    def test_admin_only(self):
        self.queue(vars=self.reset_vars())
        wait_for(lambda: self.items()[0]["attempts"] == 1, what="one attempt")
        item = self.items()[0]
        replies = self.idmd.call_as(NOBODY, [["listOutbox", {}], ["retryOutbox", {}],
                                             ["dropOutbox", {"id": item["id"]}],
                                             ["testQueueMail", {"to": "eve@example.com", "kind": "password-reset"}],
                                             ["getStats", {}]])
        for reply in replies:
            self.assertError(reply["error"], 403, "forbidden")
        self.assertEqual([i["id"] for i in self.items()], [item["id"]])
        self.assertEqual(self.items()[0]["attempts"], item["attempts"])

    def test_idmctl(self):
        self.queue(to="carol@example.com", publisherId="123456789", vars=self.reset_vars())
        wait_for(lambda: self.items()[0]["attempts"] == 1, what="one attempt")
        item = self.items()[0]
        out = self.idmctl("outbox", "list").stdout
        header, row = out.splitlines()[:2]
        self.assertEqual(header.split(), ["ID", "TO", "KIND", "PUBLISHER", "CREATED", "ATTEMPTS", "NEXT", "ATTEMPT",
                                          "LAST", "ERROR"])
        self.assertTrue(row.startswith(f"{item['id']}  carol@example.com  password-reset  123456789  "), row)
        self.assertIn("exit status 75: fake-sendmail: 451 temporary failure, try again", row)
        self.assertNotIn("secret", out)
        listed = json.loads(self.idmctl("--json", "outbox", "list").stdout)
        self.assertEqual(listed["items"], self.items())

        status = self.idmctl("status").stdout
        self.assertRegex(status, r"Outbox: +1 queued, oldest \d+s\n")
        self.assertRegex(status, r"\n +0 delivered, 1 failed attempts, 0 expired, 0 dropped since start\n")

        self.assertEqual(self.idmctl("outbox", "retry", item["id"]).stdout, "1 message(s) due now.\n")
        self.assertEqual(self.idmctl("outbox", "retry").stdout, "1 message(s) due now.\n")
        r = self.idmctl("outbox", "drop", "0000000000000000", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "idmctl: no such message in the outbox (not_found)\n")
        self.assertEqual(self.idmctl("outbox", "drop", item["id"]).stdout,
                         f"Message {item['id']} dropped undelivered.\n")
        self.assertEqual(self.idmctl("outbox", "list").stdout, "The outbox is empty.\n")
        self.assertRegex(self.idmctl("status").stdout, r"Outbox: +0 queued\n")
        r = self.idmctl("outbox", "drop", check=False)
        self.assertEqual(r.returncode, 2)

        # As an unprivileged user: refused by idmd.
        self.idmd.open_to_others()
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", IDMCTL,
                            "--socket", self.idmd.socket, "outbox", "list"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("(forbidden)", r.stderr)


class WithoutTestClock(IdmdTestCase):
    def test_test_queue_mail_does_not_exist(self):
        self.assertError(self.idmd.error("testQueueMail", {"to": "a@example.com", "kind": "password-reset"}),
                         -32601, "unknown_method")
        self.assertNotIn("testQueueMail", self.idmd.call("getServerInfo")["methods"])
        self.assertIn("listOutbox", self.idmd.call("getServerInfo")["methods"])
        self.assertEqual(self.idmd.call("getStats")["outbox"]["depth"], 0)


class Configuration(IdmdTestCase):
    def refused(self, config, *expected):
        d = Idmd(config)
        try:
            d.start(wait=False)
            self.assertNotEqual(d.proc.wait(30), 0)
            for e in expected:
                self.assertIn(e, d.log_text())
        finally:
            d.kill()
            d.cleanup()

    def test_bad_values_refuse_start_with_file_and_line(self):
        self.refused("[mail]\nmail_command = sendmail -t\n", "idmd.conf:5: invalid value 'sendmail -t' for key "
                     "'mail_command' in [mail]: expected a command line")
        self.refused("[mail]\nfrom = Idmd <idmd@example.com>\n", "idmd.conf:5: invalid value", "'from' in [mail]")
        self.refused("[mail]\ntemplate_dir = templates\n", "idmd.conf:5: invalid value 'templates' for key "
                     "'template_dir'")
        self.refused("[mail]\nmax_age = 10s\n", "idmd.conf:5: invalid value '10s' for key 'max_age'")
        self.refused("[mail]\nretry_initial = 2h\nretry_max = 1h\n",
                     "[mail] retry_initial=2h is greater than retry_max=1h.")
        self.refused("[mail]\nmax_queued = 0\n", "idmd.conf:5: invalid value '0' for key 'max_queued'")

    def test_bad_template_refuses_start(self):
        tmp = tempfile.mkdtemp(prefix="idm-templates-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        with open(os.path.join(tmp, "password-reset.txt"), "wb") as f:
            f.write(b"bad \x1b[2J escape\n")
        self.refused(f"[mail]\ntemplate_dir = {tmp}\n", f"[mail] template_dir: cannot use the template "
                     f"{tmp}/password-reset.txt")
        self.refused("[mail]\ntemplate_dir = /nonexistent/templates\n",
                     "[mail] template_dir: cannot read /nonexistent/templates: No such file or directory")

    def test_missing_command_is_a_warning(self):
        d = Idmd("[mail]\nmail_command = /nonexistent/sendmail -t -i\n")
        self.addCleanup(d.cleanup)
        d.start()
        self.assertIn("[mail] mail_command: /nonexistent/sendmail cannot be run (No such file or directory); "
                      "mail stays queued until it can.", d.log_text())


if __name__ == "__main__":
    main()
