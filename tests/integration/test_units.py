#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Units of work through the real socket: writes from many connections are committed together
(group commit: fewer durable commits than writes, getStats.store.batches), a request sees what
the requests before it on the same connection wrote even when pipelined, and kill -9 under a
write load from 32 connections loses no acknowledged write."""

import json
import random
import signal
import threading
import time

from idmtest import Client, IdmdTestCase, main, skip_on_postgresql

PASSWORD = "correct horse 9"
CONNECTIONS = 32


class Units(IdmdTestCase):
    def setUp(self):
        super().setUp()
        self.pub = self.create_publisher()["publisherId"]

    def register(self, email):
        return self.idmd.call("registerCustomer", {
            "email": email, "password": PASSWORD, "publisherId": self.pub, "locale": "en_GB", "country": "GB",
            "currency": "GBP"})

    def test_pipelined_read_sees_the_write_before_it(self):
        s = self.register("alice@example.com")
        lines = []
        for i in range(20):
            lines.append({"jsonrpc": "2.0", "id": 2 * i, "method": "updateCustomer",
                          "params": {"jwt": s["jwt"], "firstName": f"Name{i}"}})
            lines.append({"jsonrpc": "2.0", "id": 2 * i + 1, "method": "getCustomer", "params": {"jwt": s["jwt"]}})
        with self.idmd.client() as c:
            c.send_raw(b"".join(json.dumps(l).encode() + b"\n" for l in lines))
            replies = [c.recv_line() for _ in lines]
        for i in range(20):
            self.assertEqual(replies[2 * i]["result"]["firstName"], f"Name{i}")
            self.assertEqual(replies[2 * i + 1]["result"]["firstName"], f"Name{i}", "a stale read")

    @skip_on_postgresql("LMDB's group commit; on PostgreSQL each unit is a transaction of its own")
    def test_writes_of_many_connections_share_commits(self):
        sessions = [self.register(f"user{i}@example.com") for i in range(CONNECTIONS)]
        before = self.idmd.call("getStats")["store"]
        barrier = threading.Barrier(CONNECTIONS)
        errors = []

        def worker(i):
            try:
                with self.idmd.client() as c:
                    barrier.wait()
                    for n in range(20):
                        r = c.request("updateCustomer", {"jwt": sessions[i]["jwt"], "lastName": f"L{n}"})
                        assert "result" in r, r
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        after = self.idmd.call("getStats")["store"]
        units = after["batchedUnits"] - before["batchedUnits"]
        batches = after["batches"] - before["batches"]
        # The background sweep may add a unit of its own meanwhile.
        self.assertGreaterEqual(units, CONNECTIONS * 20)
        self.assertLessEqual(units, CONNECTIONS * 20 + 5)
        # 32 clients waiting on each other's commits: batches hold several units each. The bound
        # is loose on purpose (a slow machine only makes batches bigger).
        self.assertLess(batches, units * 3 // 4, f"{units} units in {batches} commits")
        print(f"{units} writes in {batches} durable commits")


class KillUnderLoad(IdmdTestCase):
    def test_kill9_under_32_connection_write_load(self):
        pub = self.create_publisher()["publisherId"]
        acked_regs = [[] for _ in range(CONNECTIONS)]
        acked_updates = [None] * CONNECTIONS
        sessions = {}
        stop = threading.Event()

        # Half the connections register new customers, half update their own customer.
        for i in range(CONNECTIONS // 2, CONNECTIONS):
            sessions[i] = self.idmd.call("registerCustomer", {
                "email": f"updater{i}@example.com", "password": PASSWORD, "publisherId": pub,
                "locale": "en_GB", "country": "GB", "currency": "GBP"})

        def worker(i):
            try:
                c = Client(self.idmd.socket, timeout=30)
            except OSError:
                return
            n = 0
            try:
                while not stop.is_set():
                    if i < CONNECTIONS // 2:
                        email = f"reg{i}-{n}@example.com"
                        r = c.request("registerCustomer", {
                            "email": email, "password": PASSWORD, "publisherId": pub, "locale": "en_GB",
                            "country": "GB", "currency": "GBP"})
                        if "result" in r:
                            acked_regs[i].append(email)
                    else:
                        r = c.request("updateCustomer", {"jwt": sessions[i]["jwt"], "lastName": f"N{n:06d}"})
                        if "result" in r:
                            acked_updates[i] = n
                    n += 1
            except (OSError, ConnectionError, json.JSONDecodeError):
                pass        # killed mid-request: that one was not acknowledged
            finally:
                c.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        # Under way (on a loaded machine the first acknowledgements may take a while), then a
        # moment more: the kill lands at a random point of the load.
        deadline = time.monotonic() + 120
        while not (any(acked_regs) and any(u is not None for u in acked_updates)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5 + random.random())
        self.idmd.proc.send_signal(signal.SIGKILL)
        self.idmd.proc.wait()
        stop.set()
        for t in threads:
            t.join()

        n_regs = sum(len(a) for a in acked_regs)
        n_updates = sum(1 for u in acked_updates if u is not None)
        self.assertGreater(n_regs, 0, "the load never got going")
        self.assertGreater(n_updates, 0, "the load never got going")

        self.idmd.start()
        for emails in acked_regs:
            for email in emails:
                s = self.idmd.call("login", {"email": email, "password": PASSWORD, "publisherId": pub})
                self.assertIn("jwt", s)
        for i, n in enumerate(acked_updates):
            if n is None:
                continue
            s = self.idmd.call("login", {"email": f"updater{i}@example.com", "password": PASSWORD,
                                         "publisherId": pub})
            got = self.idmd.call("getCustomer", {"jwt": s["jwt"]})["lastName"]
            # The last acknowledged update, or one sent after it that was committed but not
            # acknowledged before the kill.
            self.assertGreaterEqual(got, f"N{n:06d}", f"connection {i} lost an acknowledged update")
        print(f"checked {n_regs} registrations and {n_updates} updates acknowledged before kill -9")


if __name__ == "__main__":
    main()
