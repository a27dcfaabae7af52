# SPDX-License-Identifier: MIT
"""Customers as Unix users: idmd's io.systemd.UserDatabase varlink service ([userdb] socket).

Talks varlink (JSON objects ended by a NUL byte) to the socket directly: records, errors,
enumeration, uids drawn once and never again (delete, restart, backup and restore), the
publisher's unixUsers setting and setCustomerUnix, and the abuse a local peer can try (long
messages, a message without its NUL, bad JSON, floods). Then, in a private mount namespace with a
tmpfs over /run/systemd, the stock nss-systemd resolves customers through idmd: getent, id. The
host's /run is never touched.
"""

import json
import os
import shutil
import socket
import subprocess
import time
import unittest

from idmtest import TEST_PG, IDMCTL, Connection, Idmd, IdmdTestCase, RpcError, mail_config, main

PASSWORD = "correct horse 9"
SERVICE = "io.idm"
UID_MIN = 1879048192
GROUP_GID = 70000
IFACE = "io.systemd.UserDatabase"
MAX_MESSAGE = 16 * 1024         # USERDB_MAX_MESSAGE


class Varlink(Connection):
    """One varlink connection."""

    def __init__(self, path, timeout=60.0):
        super().__init__(path, timeout)

    def send(self, data):
        self.send_raw(data)

    def recv(self):
        """The next message, parsed; None when the server closed the connection."""
        return self.recv_message(b"\0")

    def call(self, method, params=None, more=False):
        """Every reply of one call (several with "more")."""
        msg = {"method": method, "parameters": params or {}}
        if more:
            msg["more"] = True
        self.send(json.dumps(msg).encode() + b"\0")
        replies = []
        while True:
            r = self.recv()
            if r is None:
                raise AssertionError(f"connection closed after {replies}")
            replies.append(r)
            if not r.get("continues"):
                return replies


class UserdbTestCase(IdmdTestCase):
    """An idmd with one publisher, then restarted with [userdb] serving that publisher."""

    UNIX_USERS = "enabled"
    EXTRA = ""

    def setUp(self):
        super().setUp()
        self.pub = self.create_publisher()["publisherId"]
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": self.UNIX_USERS})
        self.userdb = os.path.join(self.idmd.tmp, "userdb", SERVICE)
        self.restart_with_userdb()

    def userdb_config(self, socket_path):
        return (f"\n[userdb]\nsocket = {socket_path}\npublisher = {self.pub}\ngroup = idm-customers\n"
                f"group_gid = {GROUP_GID}\n" + self.EXTRA)

    def restart_with_userdb(self):
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write(self.userdb_config(self.userdb))
        self.idmd.start()

    def register(self, email, **kw):
        params = {"email": email, "password": PASSWORD, "publisherId": self.pub}
        params.update(kw)
        return self.idmd.call("registerCustomer", params)["customerId"]

    def enable(self, email, enabled=True, **kw):
        params = {"publisherId": self.pub, "email": email, "enabled": enabled}
        params.update(kw)
        return self.idmd.call("setCustomerUnix", params)

    def lookup(self, method, params, more=False):
        with Varlink(self.userdb) as v:
            return v.call(f"{IFACE}.{method}", dict(params, service=SERVICE), more=more)

    def user(self, **key):
        [reply] = self.lookup("GetUserRecord", key)
        return reply

    def record(self, **key):
        reply = self.user(**key)
        self.assertNotIn("error", reply)
        self.assertEqual(reply["parameters"]["incomplete"], False)
        return reply["parameters"]["record"]

    def assertNoRecord(self, reply):
        self.assertEqual(reply.get("error"), f"{IFACE}.NoRecordFound", reply)


class TestRecords(UserdbTestCase):
    def test_user_and_group_records(self):
        cid = self.register("Alice@Example.com", firstName="Alice", lastName="Liddell")
        self.register("bob@example.com")
        result = self.enable("alice@example.com")
        self.assertEqual(result, {"customerId": cid, "enabled": True, "unixUid": UID_MIN, "unixUser": True,
                                  "unixUsers": "enabled"})

        rec = self.record(userName="alice@example.com")
        self.assertEqual(rec, {"userName": "alice@example.com", "uid": UID_MIN, "gid": UID_MIN,
                               "realName": "Alice Liddell", "homeDirectory": "/home/idm/alice@example.com",
                               "shell": "/bin/sh", "disposition": "regular", "service": SERVICE,
                               "lastChangeUSec": rec["lastChangeUSec"]})
        self.assertIsInstance(rec["lastChangeUSec"], int)
        # By uid, by the short form, by both: the same record. No secret in it.
        self.assertEqual(self.record(uid=UID_MIN), rec)
        self.assertEqual(self.record(userName=f"c{cid}"), rec)
        self.assertEqual(self.record(userName="alice@example.com", uid=UID_MIN), rec)
        self.assertNotIn("privileged", rec)
        self.assertNotIn("hashedPassword", json.dumps(rec))
        # The customer shows its Unix fields to the publisher.
        shown = self.idmd.call("getCustomer", {"publisherId": self.pub, "customerId": cid})
        self.assertEqual((shown["unixUid"], shown["unixEnabled"]), (UID_MIN, True))

        # Not enabled, unknown, a uid nobody has: not found.
        self.assertNoRecord(self.user(userName="bob@example.com"))
        self.assertNoRecord(self.user(userName="nobody@example.com"))
        self.assertNoRecord(self.user(uid=UID_MIN + 1))
        self.assertNoRecord(self.user(uid=0))
        self.assertNoRecord(self.user(userName="c0000000000"))
        self.assertEqual(self.user(userName="alice@example.com", uid=UID_MIN + 1)["error"],
                         f"{IFACE}.NoRecordFound")

        # The private group (gid = uid) and the shared group.
        [g] = self.lookup("GetGroupRecord", {"gid": UID_MIN})
        self.assertEqual(g["parameters"]["record"], {"groupName": "alice@example.com", "gid": UID_MIN,
                                                     "disposition": "regular", "service": SERVICE})
        [g] = self.lookup("GetGroupRecord", {"groupName": "idm-customers"})
        self.assertEqual(g["parameters"]["record"], {"groupName": "idm-customers", "gid": GROUP_GID,
                                                     "disposition": "regular", "service": SERVICE})
        [g] = self.lookup("GetGroupRecord", {"gid": GROUP_GID})
        self.assertEqual(g["parameters"]["record"]["groupName"], "idm-customers")
        self.assertNoRecord(self.lookup("GetGroupRecord", {"groupName": "bob@example.com"})[0])
        # Memberships: the shared group's, by user.
        [m] = self.lookup("GetMemberships", {"userName": "alice@example.com"}, more=True)
        self.assertEqual(m, {"parameters": {"userName": "alice@example.com", "groupName": "idm-customers"}})
        self.assertNoRecord(self.lookup("GetMemberships", {"userName": "bob@example.com"}, more=True)[0])
        # Listing the group's members is an enumeration: off by default.
        self.assertNoRecord(self.lookup("GetMemberships", {"groupName": "idm-customers"}, more=True)[0])

        # Disabled: locked; enabled again: not locked.
        self.idmd.call("setCustomerDisabled", {"publisherId": self.pub, "customerId": cid, "disabled": True})
        self.assertIs(self.record(uid=UID_MIN)["locked"], True)
        self.idmd.call("setCustomerDisabled", {"publisherId": self.pub, "customerId": cid, "disabled": False})
        self.assertNotIn("locked", self.record(uid=UID_MIN))

        # Locked out by failed logins: locked until unlocked.
        for _ in range(5):
            self.idmd.error("login", {"email": "alice@example.com", "password": "wrong horse 1",
                                      "publisherId": self.pub})
        self.assertIs(self.record(uid=UID_MIN)["locked"], True)
        self.idmd.call("unlockCustomer", {"publisherId": self.pub, "customerId": cid})
        self.assertNotIn("locked", self.record(uid=UID_MIN))

        # A shell of its own; "" goes back to the default.
        self.enable("alice@example.com", shell="/bin/bash")
        self.assertEqual(self.record(uid=UID_MIN)["shell"], "/bin/bash")
        self.enable("alice@example.com", shell="")
        self.assertEqual(self.record(uid=UID_MIN)["shell"], "/bin/sh")
        # The publisher's shell is the default of its customers.
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixShell": "/usr/bin/zsh"})
        self.assertEqual(self.record(uid=UID_MIN)["shell"], "/usr/bin/zsh")

        # Not a Unix user any more: not found, but the uid stays the customer's.
        result = self.enable("alice@example.com", enabled=False)
        self.assertEqual((result["unixUid"], result["unixUser"]), (UID_MIN, False))
        self.assertNoRecord(self.user(uid=UID_MIN))
        self.assertEqual(self.enable("alice@example.com")["unixUid"], UID_MIN)

        # The publisher turns Unix users off: nobody is found.
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": "none"})
        self.assertNoRecord(self.user(uid=UID_MIN))
        self.assertNoRecord(self.user(userName="alice@example.com"))

    def test_start_says_what_is_served(self):
        self.assertIn(f"Serving the Unix users of publisher {self.pub} (unixUsers \"enabled\")",
                      self.idmd.log_text())
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": "none"})
        self.idmd.stop()
        self.idmd.start()
        self.assertIn(f"Publisher {self.pub} has unixUsers \"none\"", self.idmd.log_text())

    def test_refusals(self):
        self.register("alice@example.com")
        other = self.create_publisher()["publisherId"]
        self.idmd.call("registerCustomer", {"email": "carol@example.com", "password": PASSWORD,
                                            "publisherId": other})
        cases = [
            ({"publisherId": self.pub, "email": "alice@example.com", "enabled": True, "shell": "bin/sh"},
             400, "invalid_value"),
            ({"publisherId": self.pub, "email": "alice@example.com", "enabled": True, "shell": "/bin:/sh"},
             400, "invalid_value"),
            ({"publisherId": self.pub, "email": "alice@example.com", "enabled": "yes"}, -32602, None),
            ({"publisherId": self.pub, "email": "alice@example.com"}, -32602, None),
            ({"publisherId": self.pub, "email": "alice@example.com", "enabled": True, "uid": 5}, -32602, None),
            ({"publisherId": self.pub, "email": "nobody@example.com", "enabled": True}, 404, "not_found"),
            # Another publisher's customer is not found.
            ({"publisherId": self.pub, "email": "carol@example.com", "enabled": True}, 404, "not_found"),
        ]
        for params, code, reason in cases:
            with self.subTest(params=params):
                self.assertError(self.idmd.error("setCustomerUnix", params), code, reason)
        for value in ("some", "", "ALL"):
            self.assertError(self.idmd.error("updatePublisher", {"publisherId": self.pub, "unixUsers": value}),
                             400, "invalid_value")
        self.assertError(self.idmd.error("updatePublisher", {"publisherId": self.pub, "unixShell": "sh"}),
                         400, "invalid_value")
        # Nothing was written: no uid was drawn, the publisher is unchanged.
        shown = self.idmd.call("getCustomer", {"publisherId": self.pub, "email": "alice@example.com"})
        self.assertNotIn("unixUid", shown)
        self.assertEqual(self.idmd.call("getPublisher", {"publisherId": self.pub})["unixUsers"], "enabled")
        # A customer cannot make itself a Unix user.
        login = self.idmd.call("login", {"email": "alice@example.com", "password": PASSWORD,
                                         "publisherId": self.pub})
        self.idmd.open_to_others()
        [reply] = self.idmd.call_as(65534, [("setCustomerUnix", {"jwt": login["jwt"], "enabled": True})])
        self.assertEqual(reply["error"]["code"], -32602)
        [reply] = self.idmd.call_as(65534, [("setCustomerUnix", {"publisherId": self.pub,
                                                                 "email": "alice@example.com", "enabled": True})])
        self.assertError(reply["error"], 403, "forbidden")

    def test_idmctl(self):
        self.register("alice@example.com")

        def idmctl(*args):
            return subprocess.run([IDMCTL, "--socket", self.idmd.socket, "customer", "unix", *args,
                                   "--publisher", self.pub], capture_output=True, text=True, timeout=60)

        p = idmctl("enable", "alice@example.com")
        self.assertEqual((p.returncode, p.stdout),
                         (0, f"Customer alice@example.com is a Unix user, uid {UID_MIN}.\n"), p.stderr)
        self.assertEqual(self.record(userName="alice@example.com")["uid"], UID_MIN)
        p = idmctl("disable", "alice@example.com")
        self.assertEqual(p.stdout, "Customer alice@example.com is no Unix user any more (its uid stays reserved).\n")
        self.assertNoRecord(self.user(uid=UID_MIN))
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": "none"})
        p = idmctl("enable", "alice@example.com")
        self.assertIn(f"has uid {UID_MIN}, but its publisher's unixUsers is none", p.stdout)
        p = idmctl("maybe", "alice@example.com")
        self.assertEqual(p.returncode, 2)
        self.assertIn("expected enable or disable", p.stderr)
        p = idmctl("enable", "nobody@example.com")
        self.assertNotEqual(p.returncode, 0)
        # The publisher's setting from the command line, shown by publisher show.
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "publisher", "update", self.pub,
                            "--unix-users", "all", "--unix-shell", "/bin/bash"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "publisher", "show", self.pub],
                           capture_output=True, text=True, timeout=60)
        self.assertRegex(p.stdout, r"Unix users: +all\n")
        self.assertRegex(p.stdout, r"Unix shell: +/bin/bash\n")
        self.assertEqual(self.record(uid=UID_MIN)["shell"], "/bin/bash")
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "--json", "publisher", "create", "Unix TV",
                            "--unix-users", "enabled"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        created = json.loads(p.stdout)["publisherId"]
        self.assertEqual(self.idmd.call("getPublisher", {"publisherId": created})["unixUsers"], "enabled")

    def test_varlink_errors(self):
        cid = self.register("alice@example.com")
        self.enable("alice@example.com")
        with Varlink(self.userdb) as v:
            get = f"{IFACE}.GetUserRecord"
            self.assertEqual(v.call(get, {"uid": UID_MIN, "service": "io.other"}),
                             [{"error": f"{IFACE}.BadService", "parameters": {}}])
            self.assertEqual(v.call(get, {"uid": UID_MIN}), [{"error": f"{IFACE}.BadService", "parameters": {}}])
            self.assertEqual(v.call(get, {"service": SERVICE}),
                             [{"error": f"{IFACE}.EnumerationNotSupported", "parameters": {}}])
            self.assertEqual(v.call(get, {"service": SERVICE}, more=True),
                             [{"error": f"{IFACE}.EnumerationNotSupported", "parameters": {}}])
            self.assertEqual(v.call("io.systemd.UserDatabase.Nope", {}),
                             [{"error": "org.varlink.service.MethodNotFound",
                               "parameters": {"method": "io.systemd.UserDatabase.Nope"}}])
            for params, name in (({"uid": "x", "service": SERVICE}, "uid"),
                                 ({"uid": -1, "service": SERVICE}, "uid"),
                                 ({"uid": 2 ** 32, "service": SERVICE}, "uid"),
                                 ({"userName": 5, "service": SERVICE}, "userName"),
                                 ({"userName": "", "service": SERVICE}, "userName"),
                                 ({"userName": "a" * 400, "service": SERVICE}, "userName"),
                                 ({"gid": 5, "service": SERVICE}, "gid"),
                                 ({"password": "x", "service": SERVICE}, "password")):
                with self.subTest(params=params):
                    self.assertEqual(v.call(get, params),
                                     [{"error": "org.varlink.service.InvalidParameter",
                                       "parameters": {"parameter": name}}])
            [info] = v.call("org.varlink.service.GetInfo")
            self.assertIn(IFACE, info["parameters"]["interfaces"])
            # A oneway call gets no reply; the next call on the connection still does.
            v.send(json.dumps({"method": get, "parameters": {"uid": UID_MIN, "service": SERVICE},
                               "oneway": True}).encode() + b"\0")
            [r] = v.call(get, {"userName": f"c{cid}", "service": SERVICE})
            self.assertEqual(r["parameters"]["record"]["uid"], UID_MIN)


class TestEnumeration(UserdbTestCase):
    UNIX_USERS = "all"
    EXTRA = "unix_enumerate = yes\nname_format = id\nhome = /srv/%u/home%%\nshell = /bin/bash\n"

    def test_all_and_enumeration(self):
        # Under "all", registration draws the uid.
        a = self.register("a@example.com")
        b = self.register("b@example.com")
        users = self.lookup("GetUserRecord", {}, more=True)
        self.assertEqual([u.get("continues") for u in users], [True, None])
        recs = [u["parameters"]["record"] for u in users]
        self.assertEqual([(r["userName"], r["uid"]) for r in recs], [(f"c{a}", UID_MIN), (f"c{b}", UID_MIN + 1)])
        self.assertEqual(recs[0]["homeDirectory"], f"/srv/c{a}/home%")
        self.assertEqual(recs[0]["shell"], "/bin/bash")
        # The e-mail still finds the customer; the record names it in the configured form.
        self.assertEqual(self.record(userName="a@example.com")["userName"], f"c{a}")
        groups = [g["parameters"]["record"] for g in self.lookup("GetGroupRecord", {}, more=True)]
        self.assertEqual([(g["groupName"], g["gid"]) for g in groups],
                         [("idm-customers", GROUP_GID), (f"c{a}", UID_MIN), (f"c{b}", UID_MIN + 1)])
        members = self.lookup("GetMemberships", {"groupName": "idm-customers"}, more=True)
        self.assertEqual([m["parameters"]["userName"] for m in members], [f"c{a}", f"c{b}"])
        self.assertEqual(len(self.lookup("GetMemberships", {}, more=True)), 2)
        # Without "more", one reply.
        self.assertEqual(len(self.lookup("GetUserRecord", {}, more=False)), 1)

    def test_switch_to_all_draws_uids(self):
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": "none"})
        a = self.register("a@example.com")
        self.assertNoRecord(self.user(userName=f"c{a}"))
        self.assertNotIn("unixUid", self.idmd.call("getCustomer", {"publisherId": self.pub, "customerId": a}))
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "unixUsers": "all"})
        self.assertEqual(self.record(userName=f"c{a}")["uid"], UID_MIN)


class TestUidsNeverReused(UserdbTestCase):
    def test_delete_restart_backup(self):
        a = self.register("a@example.com")
        self.assertEqual(self.enable("a@example.com")["unixUid"], UID_MIN)
        self.idmd.call("deleteCustomer", {"publisherId": self.pub, "customerId": a})
        self.assertNoRecord(self.user(uid=UID_MIN))
        # Same e-mail again: a new customer, a new uid.
        self.register("a@example.com")
        self.assertEqual(self.enable("a@example.com")["unixUid"], UID_MIN + 1)
        self.register("b@example.com")
        self.assertEqual(self.enable("b@example.com")["unixUid"], UID_MIN + 2)
        # A restart keeps every uid and the counter.
        self.idmd.stop()
        self.idmd.start()
        self.assertEqual(self.record(userName="a@example.com")["uid"], UID_MIN + 1)
        self.assertEqual(self.record(userName="b@example.com")["uid"], UID_MIN + 2)
        if TEST_PG:
            return      # idmd's backup is LMDB's (PostgreSQL's is pg_dump's)
        # A backup, restored: the same uids, and the next one is still new.
        target = os.path.join(self.idmd.tmp, "backup")
        p = subprocess.run([IDMCTL, "--socket", self.idmd.socket, "backup", target], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.idmd.stop()
        shutil.rmtree(self.idmd.state)
        shutil.copytree(target, self.idmd.state)
        self.idmd.start()
        self.assertEqual(self.record(uid=UID_MIN + 1)["userName"], "a@example.com")
        self.register("c@example.com")
        self.assertEqual(self.enable("c@example.com")["unixUid"], UID_MIN + 3)

    def test_range_exhausted(self):
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write(f"uid_min = {UID_MIN}\nuid_max = {UID_MIN}\n")
        self.idmd.start()
        self.register("a@example.com")
        self.register("b@example.com")
        self.assertEqual(self.enable("a@example.com")["unixUid"], UID_MIN)
        e = self.idmd.error("setCustomerUnix", {"publisherId": self.pub, "email": "b@example.com", "enabled": True})
        self.assertError(e, 503, "uid_range_exhausted")
        # Nothing was written.
        shown = self.idmd.call("getCustomer", {"publisherId": self.pub, "email": "b@example.com"})
        self.assertNotIn("unixEnabled", shown)
        self.assertNotIn("unixUid", shown)


class TestAbuse(UserdbTestCase):
    EXTRA = "[ratelimit.userdb]\nrate = 5\nburst = 5\nconcurrency = 5\n"

    def alive(self):
        """idmd still answers on both sockets."""
        self.idmd.call("getServerInfo")
        with Varlink(self.userdb) as v:
            self.assertNoRecord(v.call(f"{IFACE}.GetUserRecord", {"uid": 1, "service": SERVICE})[0])

    def closed(self, v):
        self.assertIsNone(v.recv())

    def test_bad_streams_close_the_connection(self):
        get = json.dumps({"method": f"{IFACE}.GetUserRecord", "parameters": {"uid": 1, "service": SERVICE}})
        streams = [
            b"{not json}\0",
            b"[1, 2]\0",
            b'"a string"\0',
            json.dumps({"method": 5}).encode() + b"\0",
            json.dumps({"method": "x", "parameters": []}).encode() + b"\0",
            json.dumps({"method": "x", "more": "yes"}).encode() + b"\0",
            json.dumps({"method": "x", "unknown": 1}).encode() + b"\0",
            b'{"method": "x", "method": "y"}\0',
            b"[" * 100 + b"]" * 100 + b"\0",
            # Over the bound, with and without its NUL.
            b'{"method": "' + b"a" * MAX_MESSAGE + b'"}\0',
            b"a" * (MAX_MESSAGE + 10),
        ]
        for data in streams:
            with self.subTest(data=data[:40]):
                with Varlink(self.userdb) as v:
                    v.send(data)
                    self.closed(v)
        # Just under the bound is a message (here a bad call, answered).
        with Varlink(self.userdb) as v:
            pad = " " * (MAX_MESSAGE - len(get))
            v.send((get + pad).encode() + b"\0")
            self.assertNoRecord(v.recv())
        # A call without its NUL, then the end of the stream: no reply, and no harm.
        with Varlink(self.userdb) as v:
            v.send(get.encode())
            v.sock.shutdown(socket.SHUT_WR)
            self.closed(v)
        self.alive()

    def test_flood_is_rate_limited(self):
        time.sleep(1.2)         # a full bucket
        with Varlink(self.userdb) as v:
            msg = json.dumps({"method": f"{IFACE}.GetUserRecord",
                              "parameters": {"uid": 1, "service": SERVICE}}).encode() + b"\0"
            v.send(msg * 50)
            replies = [v.recv() for _ in range(50)]
        errors = [r["error"] for r in replies]
        self.assertGreaterEqual(errors.count(f"{IFACE}.ServiceNotAvailable"), 40)
        self.assertLessEqual(errors.count(f"{IFACE}.NoRecordFound"), 10)
        # idmd's own socket is not affected.
        self.idmd.call("getServerInfo")

    def test_partial_message_and_idle_time_out(self):
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write("[limits]\npartial_line_timeout = 1\nidle_timeout = 2\n")
        self.idmd.start()
        # Taken before either connection exists: idmd's clocks for both start later, so a test
        # process stalled between the connects and the send cannot make idle look closed early.
        start = time.monotonic()
        with Varlink(self.userdb) as partial, Varlink(self.userdb) as idle:
            partial.send(b'{"method": "io.systemd.UserDatabase.GetUserRecord"')
            sent = time.monotonic()
            self.closed(partial)
            self.assertLess(time.monotonic() - sent, 10)
            self.closed(idle)
            self.assertGreaterEqual(time.monotonic() - start, 1.5)
        self.alive()

    def test_connection_limit(self):
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write("[limits]\nmax_connections_per_uid = 4\nmax_connections = 8\n")
        self.idmd.start()
        held = [Varlink(self.userdb) for _ in range(4)]
        try:
            time.sleep(0.2)
            with Varlink(self.userdb) as v:
                self.closed(v)
        finally:
            for v in held:
                v.close()
        # idmd sees the four go in its own time: until then a new connection may still be refused.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.idmd.call("getServerInfo")
                break
            except (AssertionError, RpcError, ConnectionError) as e:   # refused, or closed on us
                if not isinstance(e, ConnectionError) and "too_many_connections" not in str(e):
                    raise
                self.assertLess(time.monotonic(), deadline, f"connections not given back: {e}")
                time.sleep(0.05)


class TestActivation(UserdbTestCase):
    """Both sockets passed by the service manager, told apart by FileDescriptorName=."""

    def activated(self, userdb_path):
        self.idmd.stop()
        for path in (self.idmd.socket, self.userdb):
            if os.path.exists(path):
                os.unlink(path)
        args = ["systemd-socket-activate", "-l", self.idmd.socket, "-l", userdb_path,
                "--fdname=idmd.socket:userdb"] + self.idmd.args()
        self.idmd.start(wait=False, args=args)

    def connect(self, path):
        deadline = time.monotonic() + 30
        while True:
            try:
                return Varlink(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def test_both_sockets(self):
        self.register("alice@example.com")
        self.enable("alice@example.com")
        self.activated(self.userdb)
        with self.connect(self.userdb) as v:
            [r] = v.call(f"{IFACE}.GetUserRecord", {"uid": UID_MIN, "service": SERVICE})
        self.assertEqual(r["parameters"]["record"]["userName"], "alice@example.com")
        self.idmd.call("getServerInfo")
        self.idmd.stop()
        # The sockets are the service manager's: idmd leaves them in place.
        self.assertTrue(os.path.exists(self.userdb))

    def test_userdb_socket_elsewhere(self):
        other = os.path.join(self.idmd.tmp, "userdb", "io.other")
        self.activated(other)
        with self.connect(other) as v:
            self.assertIsNone(v.recv())
        self.idmd.proc.wait(30)
        self.assertIn("not bound to [userdb] socket", self.idmd.log_text())


class TestMailCommand(UserdbTestCase):
    """The mail command must not ask idmd's userdb through NSS: idmd waits for it."""

    def test_bypass(self):
        maildir = os.path.join(self.idmd.tmp, "mail")
        os.mkdir(maildir)
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write(mail_config(maildir))
        self.idmd.start(args=self.idmd.args() + ["--test-clock"], extra_env={"IDMD_TEST_CLOCK": "1"})
        self.idmd.call("testQueueMail", {"to": "alice@example.com", "kind": "password-reset",
                                         "vars": {"link": "https://acme.example/r", "email": "alice@example.com",
                                                  "publisherName": "Acme", "expiresMinutes": 30}})
        # The fake sendmail writes 1.env, then renames its message to 1.eml: once 1.eml is
        # there, 1.env is complete (it may exist half-written before).
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(maildir, "1.eml")):
            self.assertLess(time.monotonic(), deadline, "no mail delivered")
            time.sleep(0.05)
        with open(os.path.join(maildir, "1.env")) as f:
            env = json.load(f)
        self.assertEqual(env.get("SYSTEMD_BYPASS_USERDB"), SERVICE)
        self.assertEqual(env.get("PATH"), "/usr/sbin:/usr/bin:/sbin:/bin")


class TestConfig(unittest.TestCase):
    def test_publisher_missing(self):
        d = Idmd("")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.tmp, "userdb", SERVICE)
        with open(d.config, "a") as f:
            f.write(f"\n[userdb]\nsocket = {path}\npublisher = 123456789\n")
        d.start()
        self.assertIn("[userdb] publisher = 123456789 does not exist", d.log_text())
        with Varlink(path) as v:
            [r] = v.call(f"{IFACE}.GetUserRecord", {"userName": "a@example.com", "service": SERVICE})
        self.assertEqual(r["error"], f"{IFACE}.NoRecordFound")

    def test_socket_needs_publisher(self):
        for extra, message in (("socket = /tmp/x/io.idm\n", "needs publisher"),
                               ("socket = /tmp/x/io.idm\npublisher = 12\n", "needs publisher"),
                               ("socket = /tmp/x/io idm\npublisher = 123456789\n", "service name"),
                               ("group = idm-customers\n", "needs group_gid"),
                               (f"group = idm-customers\ngroup_gid = {UID_MIN}\n", "inside uid_min..uid_max"),
                               ("uid_min = 5000\nuid_max = 4000\n", "greater than uid_max"),
                               ("uid_min = 10\n", "expected"),
                               ("name_format = upn\n", "expected email or id"),
                               ("home = /home/a:b\n", "must not contain ':'"),
                               ("group = a b\ngroup_gid = 70000\n", "not a valid group name")):
            with self.subTest(extra=extra):
                d = Idmd("[userdb]\n" + extra)
                self.addCleanup(d.cleanup)
                d.start(wait=False)
                self.assertNotEqual(d.proc.wait(30), 0)
                self.assertIn(message, d.log_text())


NSS_SCRIPT = r"""
set -u
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
"$@" >>"$LOG" 2>&1 &
idmd=$!
trap 'kill $idmd 2>/dev/null; wait $idmd' EXIT
i=0
while [ ! -S /run/systemd/userdb/io.idm ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
for q in "passwd alice@example.com" "passwd $UID_A" "passwd c$CID" "group idm-customers" \
         "group alice@example.com" "passwd bob@example.com" "passwd carol@example.com"; do
        echo "== getent $q"
        getent $q
        echo "rc=$?"
done
echo "== id"
id alice@example.com
echo "== id carol"
id carol@example.com 2>&1
echo "== enumerate"
getent passwd | grep '@example.com'
echo "== enumerate groups"
getent group | grep 'idm-customers'
echo "== end"
"""


class TestNss(UserdbTestCase):
    """The stock nss-systemd asks idmd, in a private mount namespace (nothing of the host's /run
    changes): /etc/nsswitch.conf has "passwd: files systemd" on Debian 12."""

    ENUMERATE = False

    def setUp(self):
        if not os.path.exists("/usr/lib/x86_64-linux-gnu/libnss_systemd.so.2") and \
                not any(os.path.exists(os.path.join(d, "libnss_systemd.so.2"))
                        for d in ("/lib", "/usr/lib", "/lib64", "/usr/lib64")):
            self.skipTest("libnss-systemd is not installed")
        with open("/etc/nsswitch.conf") as f:
            if not any(l.split()[:1] == ["passwd:"] and "systemd" in l for l in f):
                self.skipTest("nsswitch.conf does not list systemd for passwd")
        if os.geteuid() != 0:
            self.skipTest("a private mount namespace needs root")
        super().setUp()

    def run_nss(self):
        """Customers set up as the tests expect, then the script's output in the namespace."""
        self.cid = self.register("alice@example.com", firstName="Alice")
        self.uid = self.enable("alice@example.com")["unixUid"]
        self.register("bob@example.com")
        other = self.create_publisher()["publisherId"]       # unixUsers none, and not served
        self.idmd.call("registerCustomer", {"email": "carol@example.com", "password": PASSWORD,
                                            "publisherId": other})
        self.idmd.call("setCustomerUnix", {"publisherId": other, "email": "carol@example.com", "enabled": True})
        self.idmd.stop()
        with open(self.idmd.config, "a") as f:
            f.write(self.userdb_config("/run/systemd/userdb/io.idm"))
            if self.ENUMERATE:
                f.write("unix_enumerate = yes\n")
        env = dict(os.environ, LOG=self.idmd.log_path, UID_A=str(self.uid), CID=self.cid)
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", NSS_SCRIPT, "sh"]
                           + self.idmd.args(), env=env, capture_output=True, text=True, timeout=120)
        self.assertIn("== end", p.stdout, p.stdout + p.stderr)
        # The host's /run/systemd has no trace of it.
        self.assertFalse(os.path.exists("/run/systemd/userdb/io.idm"))
        return p.stdout

    def test_getent_and_id(self):
        out = self.run_nss()
        uid, cid = self.uid, self.cid
        line = f"alice@example.com:x:{uid}:{uid}:Alice:/home/idm/alice@example.com:/bin/sh"
        self.assertIn(f"== getent passwd alice@example.com\n{line}\nrc=0\n", out, out)
        self.assertIn(f"== getent passwd {uid}\n{line}\nrc=0\n", out)
        self.assertIn(f"== getent passwd c{cid}\n{line}\nrc=0\n", out)
        self.assertIn(f"== getent group idm-customers\nidm-customers:x:{GROUP_GID}:\nrc=0\n", out)
        self.assertIn(f"== getent group alice@example.com\nalice@example.com:x:{uid}:\nrc=0\n", out)
        # Not a Unix user; another publisher's (neither served nor unixUsers on): unknown.
        self.assertIn("== getent passwd bob@example.com\nrc=2\n", out)
        self.assertIn("== getent passwd carol@example.com\nrc=2\n", out)
        self.assertIn(f"uid={uid}(alice@example.com) gid={uid}(alice@example.com) "
                      f"groups={uid}(alice@example.com),{GROUP_GID}(idm-customers)", out)
        self.assertRegex(out, r"== id carol\n.*no such user")
        # No enumeration: listing everybody shows no customer, and the shared group no members.
        self.assertIn("== enumerate\n== enumerate groups\n== end", out)


class TestNssEnumerate(TestNss):
    ENUMERATE = True

    def test_getent_and_id(self):
        out = self.run_nss()
        uid = self.uid
        self.assertIn(f"== enumerate\nalice@example.com:x:{uid}:{uid}:Alice:/home/idm/alice@example.com:/bin/sh\n"
                      f"== enumerate groups\nidm-customers:x:{GROUP_GID}:alice@example.com\n== end", out, out)
        self.assertIn(f"== getent group idm-customers\nidm-customers:x:{GROUP_GID}:alice@example.com\nrc=0\n", out)


if __name__ == "__main__":
    main()
