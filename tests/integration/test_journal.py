# SPDX-License-Identifier: MIT
"""idmd's journal entries, read the way journald reads them: idmd runs in a private mount
namespace whose /run is a directory of the test's, where the test listens on
/run/systemd/journal/socket (journald's native protocol) and idmd's stderr is the "journal
stream" JOURNAL_STREAM names. A full scenario at debug level (registration, logins right and
wrong up to a lock, refresh and its reuse, password change and reset by mail, SSO, device login,
key rotation, backup, deletion, a rate limit, a reload, a stop) then shows: each event with its
MESSAGE_ID and the request's fields (REQUEST_ID, METHOD, PEER_UID, PUBLISHER_ID, CUSTOMER_ID,
REASON); one rate-limit entry for many refusals; and no password, token, code or hash anywhere in
what idmd logged, journal or stderr. Nothing of the host's /run is touched."""

import json
import os
import re
import signal
import socket
import struct
import threading
import time

from idmtest import TEST_PG, Idmd, main
from test_remote import REMOTE_AUTH_URL, SSO_URL
from test_reset import NEW_PASSWORD, PASSWORD, RESET_URL, ResetCase

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def message_ids():
    with open(os.path.join(SOURCE_ROOT, "idmd", "message-ids.h")) as f:
        return dict(re.findall(r'#define IDM_MESSAGE_(\w+)\s+"([0-9a-f]{32})"', f.read()))


def parse_native(data):
    """One datagram of journald's native protocol: "NAME=value\\n", or "NAME\\n", a 64-bit
    little-endian length, the value and "\\n" for values that may hold newlines."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name = line
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            value = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        name = name.decode()
        if name in fields:
            raise AssertionError(f"field {name} twice in one entry: {data!r}")
        fields[name] = value.decode("utf-8", "replace")
    return fields


class FakeJournal:
    """A datagram socket at <dir>/systemd/journal/socket, drained by a thread into entries."""

    def __init__(self, run_dir):
        os.makedirs(os.path.join(run_dir, "systemd", "journal"))
        self.path = os.path.join(run_dir, "systemd", "journal", "socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.raw, self.entries = [], []
        self.stop_reading = False
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        self.sock.settimeout(0.2)
        while not self.stop_reading:
            try:
                self.take(*socket.recv_fds(self.sock, 1 << 17, 4)[:2])
            except socket.timeout:
                continue

    def take(self, data, fds):
        for fd in fds:     # a large entry comes as a sealed memfd
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        self.raw.append(data)
        self.entries.append(parse_native(data))

    def close(self):
        """Stops the thread, then takes what is still queued on the socket: all idmd sent, once it
        has exited (the thread, however late it ran, has not necessarily read it all)."""
        self.stop_reading = True
        self.thread.join()
        self.sock.setblocking(False)
        while True:
            try:
                self.take(*socket.recv_fds(self.sock, 1 << 17, 4)[:2])
            except BlockingIOError:
                break
        self.sock.close()

    def with_id(self, message_id):
        return [e for e in self.entries if e.get("MESSAGE_ID") == message_id]


def journal_idmd_start(self, args=None, extra_env=None, wait=True):
    """Idmd.start() inside a mount namespace whose /run holds the fake journal's socket, with
    stderr announced as the journal stream."""
    run_dir = os.path.join(self.tmp, "fake-run")
    if not hasattr(self, "journal"):
        self.journal = FakeJournal(run_dir)
    open(self.log_path, "ab").close()
    st = os.stat(self.log_path)
    env = dict(extra_env or {}, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" /run && exec "$@"', run_dir] + (args or self.args())
    return Idmd.start(self, wait=wait, extra_env=env, args=wrapped)


class JournalIdmd(Idmd):
    start = journal_idmd_start


class JournalScenario(ResetCase):
    CONFIG = ("[reset]\nmax_per_hour = 5\n[lockout]\ndeny = 3\n[tokens]\nrefresh_grace = 0\n"
              "[ratelimit.registration]\nrate = 0.01\nburst = 4\nconcurrency = 10\n")
    IDMD = JournalIdmd

    def test_events_fields_and_no_secrets(self):
        ids = message_ids()
        idmd, pub = self.idmd, self.pub
        journal = idmd.journal
        secrets = [PASSWORD, NEW_PASSWORD, self.token, self.alice["jwt"], self.alice["refreshToken"],
                   self.alice["customerToken"]]

        # Logins: right, wrong until the lock, then a refusal for the lock.
        login = idmd.call("login", {"email": "alice@example.com", "password": PASSWORD, "publisherId": pub})
        secrets += [login["jwt"], login["refreshToken"], login["customerToken"]]
        wrong = [f"Wrong guess {i}x" for i in range(4)]
        secrets += wrong
        for w in wrong:
            idmd.error("login", {"email": "alice@example.com", "password": w, "publisherId": pub})
        idmd.error("login", {"email": "nobody@example.com", "password": "Nobody pw 1", "publisherId": pub})
        secrets.append("Nobody pw 1")
        idmd.call("unlockCustomer", {"publisherId": pub, "email": "alice@example.com"})

        # Refresh, then the old token again: the session is revoked.
        refreshed = idmd.call("refreshToken", {"refreshToken": login["refreshToken"]})
        secrets += [refreshed["jwt"], refreshed["refreshToken"]]
        idmd.error("refreshToken", {"refreshToken": login["refreshToken"]})

        # Password change, then a reset by mail.
        idmd.call("changePassword", {"jwt": self.alice["jwt"], "oldPassword": PASSWORD, "newPassword": "Middle pw 77"})
        secrets.append("Middle pw 77")
        self.request()
        token = self.token_of(self.new_mails()[0])
        secrets.append(token)
        idmd.call("updatePassword", self.update(token))

        # SSO and device login.
        idmd.call("updatePublisher", {"publisherId": pub, "ssoUrl": SSO_URL, "remoteAuthUrl": REMOTE_AUTH_URL,
                                      "deviceVerificationUrl": "https://acme.example/device"})
        session = idmd.call("publisherLogin", {"publisherId": pub, "publisherToken": self.token})["sessionID"]
        url = idmd.call("getSingleSignOnByCustomer", {"sessionID": session, "idCustomer": self.alice["customerId"],
                                                      "customerType": "CustomerReference"})
        sso = re.search(r"[?&]token=([^&]+)", url).group(1)
        secrets += [session, sso]
        signed_in = idmd.call("redeemToken", {"token": sso})
        secrets += [signed_in["jwt"], signed_in["refreshToken"], signed_in["customerToken"]]
        start = idmd.call("startDeviceLogin", {"publisherId": pub})
        secrets += [start["deviceCode"], start["userCode"]]
        idmd.call("approveDeviceLogin", {"jwt": signed_in["jwt"], "userCode": start["userCode"]})
        device = idmd.call("pollDeviceLogin", {"deviceCode": start["deviceCode"]})
        secrets += [device["jwt"], device["refreshToken"], device["customerToken"]]

        # Administration: a key rotation, a backup, a publisher and a deletion.
        idmd.call("rotateSigningKey")
        if not TEST_PG:     # a store in PostgreSQL is pg_dump's to back up
            idmd.call("backup", {"path": os.path.join(idmd.tmp, "backup")})
        other = self.create_publisher(name="Other")
        secrets.append(other["publisherToken"])
        bob = idmd.call("registerCustomer", {"email": "bob@example.com", "password": "Bob pw 12345",
                                             "publisherId": pub})
        secrets += ["Bob pw 12345", bob["jwt"], bob["refreshToken"], bob["customerToken"]]
        idmd.call("deleteCustomer", {"publisherId": pub, "customerId": bob["customerId"]})

        # A flood of registrations: many refused, one entry.
        refused = 0
        for i in range(12):
            e = idmd.error("registerCustomer", {"email": "alice@example.com", "password": "Flood pw 12345",
                                                "publisherId": pub})
            refused += (e.get("data") or {}).get("reason") == "rate_limited"
        self.assertGreaterEqual(refused, 8)

        idmd.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 120
        while not journal.with_id(ids["CONFIG_RELOADED"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(idmd.stop(), 0)
        journal.close()     # takes every entry the stopped idmd left on the socket

        by_id = {name: journal.with_id(i) for name, i in ids.items()}
        self.assertTrue(journal.entries, "nothing reached the fake journal")
        for e in journal.entries:
            self.assertEqual(e.get("SYSLOG_IDENTIFIER"), "idmd", e)
            self.assertIn(e.get("PRIORITY"), list("34567"), e)
            self.assertTrue(e.get("MESSAGE") and e.get("CODE_LINE"), e)
            self.assertNotIn("log.c", e.get("CODE_FILE"), e)       # the caller's place, not the logger's

        def one(name, **fields):
            entries = [e for e in by_id[name] if all(e.get(k) == v for k, v in fields.items())]
            self.assertTrue(entries, f"no {name} entry with {fields}; have {by_id[name]}")
            return entries[0]

        alice = self.alice["customerId"]
        for name in ("STARTED", "STOPPED", "CONFIG_RELOADED", "KEY_ROTATED") + (() if TEST_PG else ("BACKUP_WRITTEN",)):
            one(name)
        e = one("LOGIN_SUCCEEDED", METHOD="login", CUSTOMER_ID=alice, PUBLISHER_ID=pub, PEER_UID="0",
                CODE_FUNC="login_finish")
        self.assertRegex(e["REQUEST_ID"], r"^c\d+\.\d+$")
        one("LOGIN_SUCCEEDED", METHOD="redeemToken", CUSTOMER_ID=alice)
        one("LOGIN_SUCCEEDED", METHOD="pollDeviceLogin", CUSTOMER_ID=alice)
        one("LOGIN_FAILED", METHOD="login", CUSTOMER_ID=alice, REASON="invalid_credentials")
        one("LOGIN_FAILED", METHOD="login", REASON="unknown_user")
        one("LOGIN_FAILED", METHOD="login", REASON="account_locked")
        one("ACCOUNT_LOCKED", METHOD="login")
        one("REFRESH_REUSE", METHOD="refreshToken", REASON="invalid_token")
        one("PASSWORD_CHANGED", METHOD="changePassword", CUSTOMER_ID=alice)
        one("PASSWORD_CHANGED", METHOD="updatePassword", CUSTOMER_ID=alice, PUBLISHER_ID=pub)
        one("PUBLISHER_CREATED", METHOD="createPublisher", PUBLISHER_ID=other["publisherId"])
        one("CUSTOMER_DELETED", METHOD="deleteCustomer", CUSTOMER_ID=bob["customerId"], PUBLISHER_ID=pub)
        self.assertEqual(len(by_id["RATE_LIMITED"]), 1, by_id["RATE_LIMITED"])
        one("RATE_LIMITED", METHOD="registerCustomer", REASON="rate_limited")
        # Entries outside any request carry no request's fields.
        self.assertNotIn("REQUEST_ID", one("STOPPED"))

        # No secret anywhere: not whole, not its first 16 characters, and no hash.
        everything = b"\n".join(journal.raw).decode("utf-8", "replace") + idmd.log_text()
        for s in secrets:
            self.assertGreaterEqual(len(s), 8)
            self.assertNotIn(s, everything)
            self.assertNotIn(s[:16], everything)
        self.assertNotIn("$argon2", everything)
        self.assertGreater(len(journal.entries), 50)    # debug level: plenty was logged


if __name__ == "__main__":
    main()
