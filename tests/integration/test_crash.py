#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety: several clients, each on its own connection, write to idmd (registrations,
refresh-token rotations, consent updates, password-reset requests with a code, whose mails go
through the outbox to the fake sendmail) while the test kills idmd with SIGKILL at random moments
(50 times, and 10 more while it starts) and restarts it on the same state directory. After each kill
the store is opened with store-inspect and every record must decode, and no refresh-token family
may have two live (unrotated) tokens; after each restart every write acknowledged before the kill
must be there. At the end the outbox is drained: every acknowledged reset request's mail arrived
at least once, copies of one message carry the same Message-ID and the same bytes, and the code
of each customer's newest mail sets a new password. Prints the figures (docs/reliability.md)."""

import collections
import email
import email.policy
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from idmtest import Client, Idmd, Mailbox, fake_sendmails, mail_config, main

STORE_INSPECT = os.environ.get("STORE_INSPECT", "store-inspect")
KILLS = int(os.environ.get("IDM_CRASH_KILLS", "50"))   # fewer only to debug the test itself
CLIENTS = int(os.environ.get("IDM_CRASH_CLIENTS", "4"))
PASSWORD = "correct horse 9"
CONSENTS = ("news", "offers")
# The mix of writes. A reset request costs a run of the (Python) fake sendmail, 0.1 to 0.4 s on a
# busy machine, so one client in turn makes one between two kills, at a random point of the load.
OPS = ("register",) + ("refresh",) * 4 + ("consents",) * 3 + ("reset",) * 2
# refresh_grace at its maximum: a refresh whose reply the kill swallowed is presented again after
# the restart and yields the successor it was rotated to, if the rotation was committed. The
# smallest map: it grows often (a restart maps just what the file holds), so kills also land
# while a batch is rolled back, the map grown and every unit of the batch run again.
CONFIG = ("[reset]\nmax_per_hour = 1000\ncode_tries = 100\n\n[tokens]\nrefresh_grace = 5min\n\n"
          "[store]\nmap_size_initial = 1M\n\n")


class Lost(Exception):
    """An acknowledged write that is not there after a restart."""


class Worker:
    """One client: its own connection, its own customers, one request at a time. A request whose
    connection broke before its reply is the one unsettled write (self.pending), settled after the
    restart; everything else is acknowledged or refused."""

    def __init__(self, test, n, seed):
        self.test = test
        self.n = n
        self.rng = random.Random(seed)
        self.customers = []         # dicts: email, customerId, customerToken, refresh, consents, resets
        self.touched = {}           # the customers written to since the last check, by e-mail
        self.serial = 0
        self.pending = None
        self.acked = collections.Counter()
        self.interrupted = collections.Counter()    # writes a kill interrupted: committed or not
        self.errors = []            # error replies during the load: none expected
        self.socket = None
        self.reset_budget = 0

    def run(self):
        try:
            c = Client(self.socket, timeout=30)
        except OSError:
            return
        with c:
            try:
                while True:
                    self.step(c)
            except (OSError, ConnectionError, ValueError):
                return              # the kill: the pending write, if any, stays unsettled

    def step(self, c):
        op = self.rng.choice(OPS) if self.customers else "register"
        if op == "reset" and not self.reset_budget:
            op = "refresh"
        if op == "register":
            self.serial += 1
            addr = f"c{self.n}-{self.serial}@example.com"
            self.pending = ("register", addr)
            r = self.call(c, "registerCustomer", {"email": addr, "password": PASSWORD, "publisherId": self.test.pub,
                                                  "locale": "en_GB", "country": "GB", "currency": "GBP"})
            if r is not None:
                self.add(addr, r)
        else:
            cust = self.rng.choice(self.customers)
            self.touched[cust["email"]] = cust
            if op == "refresh":
                self.pending = ("refresh", cust)
                r = self.call(c, "refreshToken", {"refreshToken": cust["refresh"]})
                if r is not None:
                    cust["previous"], cust["refresh"] = cust["refresh"], r["refreshToken"]
            elif op == "consents":
                want = {name: self.rng.choice(("accepted", "declined")) for name in CONSENTS}
                self.pending = ("consents", cust, want)
                r = self.call(c, "updateCustomerConsents", {"customerToken": cust["customerToken"], "consents": [
                    {"name": name, "version": 1, "state": state} for name, state in want.items()]})
                if r is not None:
                    cust["consents"] = want
            else:
                self.pending = ("reset", cust)
                self.reset_budget -= 1
                if self.call(c, "requestPasswordReset", {"customerEmail": cust["email"], "publisherId": self.test.pub,
                                                         "useCode": True}) is not None:
                    cust["resets"] += 1

    def add(self, addr, r):
        cust = {"email": addr, "customerId": r["customerId"], "customerToken": r["customerToken"],
                "refresh": r["refreshToken"], "consents": {}, "resets": 0}
        self.customers.append(cust)
        self.touched[addr] = cust

    def call(self, c, method, params):
        reply = c.request(method, params)
        self.pending = None
        if "error" in reply:
            self.errors.append((method, reply["error"]))
            return None
        self.acked[method] += 1
        return reply["result"]

    def settle(self, d):
        """After the restart: finds out whether the write the kill interrupted was committed."""
        if self.pending is None:
            return
        kind, *args = self.pending
        self.pending = None
        if kind == "register":
            with d.client() as c:
                reply = c.request("login", {"email": args[0], "password": PASSWORD, "publisherId": self.test.pub})
            if "result" in reply:
                self.add(args[0], reply["result"])
            self.interrupted["committed" if "result" in reply else "not committed"] += 1
        elif kind == "refresh":
            # Not rotated: rotates now; rotated: within the grace window, the same successor.
            cust = args[0]
            with d.client() as c:
                rotated = not c.call("introspectToken", {"token": cust["refresh"]}).get("active")
                self.interrupted["committed" if rotated else "not committed"] += 1
                reply = c.request("refreshToken", {"refreshToken": cust["refresh"]})
            if "error" in reply:
                raise Lost(f"the refresh token of {cust['email']} before an interrupted refresh no longer "
                           f"works: {reply['error']}")
            cust["previous"], cust["refresh"] = cust["refresh"], reply["result"]["refreshToken"]
        elif kind == "consents":
            cust, want = args
            got = consent_states(d, cust)
            if got not in (cust["consents"], want):
                raise Lost(f"consents of {cust['email']} are {got}, neither {cust['consents']} nor {want}")
            self.interrupted["unknown" if want == cust["consents"] else
                             "committed" if got == want else "not committed"] += 1
            cust["consents"] = got
        else:
            # an interrupted reset request may or may not have queued a mail: nothing to settle
            self.interrupted["unknown"] += 1

    def check(self, d, everything=False):
        """Every acknowledged write of this client (to the customers written to since the last
        check, or to all) is in the store: each customer is there (and, checking all, logs in with
        its password), its newest refresh token is live and the one before it is not, its consents
        are as last acknowledged. Returns what was not there."""
        lost = []
        customers, self.touched = self.customers if everything else list(self.touched.values()), {}
        with d.client() as c:
            for cust in customers:
                r = c.request("getCustomer", {"customerToken": cust["customerToken"]})
                if "error" in r or r["result"]["customerId"] != cust["customerId"]:
                    lost.append(f"customer {cust['email']}: {r}")
                    continue
                r = c.call("introspectToken", {"token": cust["refresh"]})
                if not r.get("active"):
                    lost.append(f"refresh token of {cust['email']} inactive: {r}")
                if cust.get("previous") and c.call("introspectToken", {"token": cust["previous"]}).get("active"):
                    lost.append(f"the rotated refresh token of {cust['email']} is still active")
                if everything:
                    r = c.request("login", {"email": cust["email"], "password": PASSWORD, "publisherId": self.test.pub})
                    if "error" in r:
                        lost.append(f"login of {cust['email']}: {r['error']}")
                got = {x["name"]: x["state"] for x in c.call("getCustomerConsents", {
                    "customerToken": cust["customerToken"]})["consents"] if x["state"] is not None}
                if got != cust["consents"]:
                    lost.append(f"consents of {cust['email']}: {got} != {cust['consents']}")
        return lost


def consent_states(d, cust):
    got = d.call("getCustomerConsents", {"customerToken": cust["customerToken"]})["consents"]
    return {x["name"]: x["state"] for x in got if x["state"] is not None}


def inspect_store(store):
    """Opens a stopped idmd's store with store-inspect: every record must decode (store-inspect
    fails on one that does not) and no refresh-token family may have two unrotated tokens.
    Returns the number of records."""
    p = subprocess.run([STORE_INSPECT, store, "dump"], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"store-inspect failed ({p.returncode}): {p.stderr}")
    live = collections.Counter()
    lines = p.stdout.splitlines()
    for line in lines:
        rec = json.loads(line)
        value = rec["value"]
        if rec["table"] == "tokens" and value.get("type") == "refresh" and "rotated" not in value:
            live[value["family"]] += 1
    twins = {f: n for f, n in live.items() if n > 1}
    if twins:
        raise AssertionError(f"refresh-token families with more than one live token: {twins}")
    return len(lines)


class CrashSafety(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="idm-crash-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.maildir = os.path.join(tmp, "mail")
        os.mkdir(self.maildir)
        self.addCleanup(self.wait_for_sendmail)
        self.idmd = Idmd(CONFIG + mail_config(self.maildir), tmp=tmp)
        self.addCleanup(self.idmd.cleanup)
        self.idmd.start()
        p = self.idmd.call("createPublisher", {"name": "Crash Test", "allowedRedirectUris": []})
        self.pub = p["publisherId"]
        self.idmd.call("updatePublisher", {"publisherId": self.pub, "resetMode": "code"})
        self.idmd.call("setPublisherConsents", {"publisherToken": p["publisherToken"], "consents": [
            {"name": name, "label": name.title(), "required": False} for name in CONSENTS]})

    def wait_for_sendmail(self):
        """Until the fake sendmails that kills left behind have finished."""
        deadline = time.monotonic() + 30
        while fake_sendmails(f"{self.maildir} ") and time.monotonic() < deadline:
            time.sleep(0.05)

    def test_sigkill_under_load_loses_nothing_acknowledged(self):
        rng = random.Random(os.environ.get("IDM_CRASH_SEED", str(time.time_ns())))
        seed = rng.randrange(1 << 30)
        print(f"seed {seed} (IDM_CRASH_SEED), {KILLS} kills, {CLIENTS} clients", flush=True)
        rng = random.Random(seed)
        workers = [Worker(self, n, rng.randrange(1 << 30)) for n in range(CLIENTS)]
        lost, records, start_kills, grown, started = [], 0, 0, 0, time.monotonic()
        for kill in range(KILLS):
            threads = []
            for w in workers:
                t = threading.Thread(target=w.run, name=f"crash-client-{w.n}", daemon=True)
                w.socket = self.idmd.socket
                w.reset_budget = int(kill % CLIENTS == w.n)
                threads.append(t)
                t.start()
            time.sleep(rng.uniform(0.05, 0.6))
            grown += self.idmd.call("getStats")["store"]["grown"]
            self.idmd.kill()
            for t in threads:
                t.join(60)
                self.assertFalse(t.is_alive(), "a client hung after the kill")
            records = inspect_store(self.idmd.store_arg())
            if kill % 5 == 4:
                # Now and then a kill while idmd starts: opening the store, loading the keys,
                # resuming the outbox.
                self.idmd.start(wait=False)
                time.sleep(rng.uniform(0, 0.1))
                self.idmd.kill()
                start_kills += 1
                inspect_store(self.idmd.store_arg())
            self.idmd.start()
            for w in workers:
                w.settle(self.idmd)
            for w in workers:
                lost += w.check(self.idmd)
            self.assertEqual(lost, [], f"after kill {kill + 1}")
        for w in workers:
            self.assertEqual(w.errors, [], f"error replies to client {w.n}")

        load = time.monotonic() - started
        for w in workers:
            lost += w.check(self.idmd, everything=True)
        mails = self.drain_outbox()
        lost += self.check_mail(workers, mails)
        acked = sum((w.acked for w in workers), collections.Counter())
        interrupted = sum((w.interrupted for w in workers), collections.Counter())
        customers = [c for w in workers for c in w.customers]
        print(f"{KILLS} kills under load (and {start_kills} more while starting) in {load:.0f} s, "
              f"{time.monotonic() - started - load:.0f} s for the final checks and the outbox; "
              f"{sum(acked.values())} acknowledged writes "
              f"({', '.join(f'{m} {n}' for m, n in sorted(acked.items()))}); {len(customers)} customers, "
              f"{records} records in the store, the map grown at least {grown} times; "
              f"{len(mails['files'])} mails delivered, {len(mails['ids'])} distinct, "
              f"{mails['duplicates']} duplicate(s); {sum(interrupted.values())} writes interrupted by a kill "
              f"({', '.join(f'{n} {k}' for k, n in sorted(interrupted.items()))}); lost: {len(lost)}", flush=True)
        self.assertEqual(lost, [])
        # One command runs at a time: a kill leaves at most one message delivered but not deleted.
        self.assertLessEqual(mails["duplicates"], KILLS)
        self.assertGreater(acked["refreshToken"], 0)
        self.assertGreater(acked["requestPasswordReset"], 0)
        self.use_reset_codes(customers, mails)

    def test_sigkill_during_the_first_start(self):
        """A kill while idmd creates a new store (tables, schema stamp, first signing key) leaves
        a state directory the next start accepts."""
        rng = random.Random()
        for i in range(10):
            d = Idmd(CONFIG + mail_config(self.maildir))
            self.addCleanup(d.cleanup)
            d.start(wait=False)
            time.sleep(rng.uniform(0, 0.08))   # idmd is ready after about 0.05 s here
            d.kill()
            if d.pg_schema or os.path.exists(os.path.join(d.state, "data.mdb")):
                inspect_store(d.store_arg())
            d.start()
            d.call("createPublisher", {"name": "After the kill"})
            d.stop()

    def drain_outbox(self):
        """Waits until the outbox is empty and no fake sendmail runs, then reads every delivered
        message: {"files": [(to, Message-ID, parsed message), ...] in delivery order, "ids":
        {Message-ID: bytes}, "duplicates": copies beyond the first}."""
        Mailbox(self.idmd, self.maildir).new(timeout=120)
        self.wait_for_sendmail()
        self.assertEqual(fake_sendmails(f"{self.maildir} "), [])
        files, ids, duplicates = [], {}, 0
        for name in Mailbox(self.idmd, self.maildir).files():
            with open(os.path.join(self.maildir, name), "rb") as f:
                raw = f.read()
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            mid = str(msg["Message-ID"])
            self.assertRegex(mid, r"^<.+@.+>$")
            if mid in ids:
                duplicates += 1
                self.assertEqual(ids[mid], raw, f"two different messages with the Message-ID {mid}")
            ids[mid] = raw
            files.append((str(msg["To"]).lower(), mid, msg))
        return {"files": files, "ids": ids, "duplicates": duplicates}

    def check_mail(self, workers, mails):
        """Every acknowledged reset request's mail arrived: at least as many distinct Message-IDs
        reached each customer as its requests that were acknowledged."""
        per_address = collections.defaultdict(set)
        for to, mid, _ in mails["files"]:
            per_address[to].add(mid)
        lost = []
        for w in workers:
            for cust in w.customers:
                if len(per_address[cust["email"]]) < cust["resets"]:
                    lost.append(f"{cust['email']}: {cust['resets']} reset(s) acknowledged, "
                                f"{len(per_address[cust['email']])} mail(s) delivered")
        return lost

    def use_reset_codes(self, customers, mails):
        """The code in each customer's newest reset mail sets a new password: the reset record
        committed with the mail is there."""
        newest, seen = {}, set()
        for to, mid, msg in mails["files"]:
            if mid not in seen:             # a copy delivered again after a kill is not newer
                seen.add(mid)
                newest[to] = msg
        used = 0
        for cust in customers:
            msg = newest.get(cust["email"])
            if msg is None:
                continue
            text = msg.get_body(preferencelist=("plain",)).get_content()
            code = re.search(r"^\s+([0-9]{8})\s*$", text, re.M)
            self.assertIsNotNone(code, msg)
            self.idmd.call("updatePassword", {"customerEmail": cust["email"], "publisherId": self.pub,
                                              "resetCode": code.group(1), "newPassword": "battery staple 10"})
            self.idmd.call("login", {"email": cust["email"], "password": "battery staple 10",
                                     "publisherId": self.pub})
            used += 1
        print(f"{used} reset code(s) from the newest mails set a new password", flush=True)


if __name__ == "__main__":
    main()
