#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""JSON-RPC framing and envelope of idmd over the real socket: pipelining, batches,
notifications, the error model, and every protocol limit — each abusive input is answered or
the connection closed, and idmd then still serves the next client."""

import json
import socket
import time

from idmtest import IdmdTestCase, RpcError, main


class Protocol(IdmdTestCase):
    CONFIG = """
[limits]
max_line = 4096
max_depth = 8
max_batch = 5
max_connections_per_uid = 4
idle_timeout = 2
partial_line_timeout = 1
"""

    def assertStillServing(self):
        # A connection whose client went away is counted until the calls it had in flight are
        # done: at once on LMDB, after their statements on PostgreSQL. So a refusal for too many
        # connections may come first there, for a moment.
        deadline = time.monotonic() + 60
        while True:
            with self.idmd.client() as c:
                try:
                    self.assertIn("version", c.call("getServerInfo"))
                    return
                except (AssertionError, RpcError) as e:
                    if "too_many_connections" not in str(e) or time.monotonic() > deadline:
                        raise
            time.sleep(0.05)

    def test_server_info(self):
        info = self.idmd.call("getServerInfo")
        self.assertEqual(info["protocolVersion"], 1)
        self.assertIn("getServerInfo", info["methods"])
        self.assertIn("createPublisher", info["methods"])
        self.assertEqual(info["role"], "admin")  # the tests run as root

    def test_pipelined_replies_keep_request_order(self):
        with self.idmd.client() as c:
            lines = b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "getServerInfo"}).encode() + b"\n"
                             for i in range(20))
            c.send_raw(lines)
            self.assertEqual([c.recv_line()["id"] for _ in range(20)], list(range(20)))

    def test_string_ids_and_null_id(self):
        with self.idmd.client() as c:
            self.assertEqual(c.request("getServerInfo", id="abc")["id"], "abc")
            c.send_raw(b'{"jsonrpc":"2.0","id":null,"method":"getServerInfo"}\n')
            reply = c.recv_line()
            self.assertIsNone(reply["id"])
            self.assertIn("result", reply)

    def test_notification_gets_no_reply(self):
        with self.idmd.client() as c:
            c.send_raw(b'{"jsonrpc":"2.0","method":"getServerInfo"}\n'
                       b'{"jsonrpc":"2.0","method":"noSuchMethod"}\n'
                       b'{"jsonrpc":"2.0","id":7,"method":"getServerInfo"}\n')
            self.assertEqual(c.recv_line()["id"], 7)

    def test_batch(self):
        with self.idmd.client() as c:
            c.send_raw(json.dumps([
                {"jsonrpc": "2.0", "id": 1, "method": "getServerInfo"},
                {"jsonrpc": "2.0", "method": "getServerInfo"},
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                5,
            ]).encode() + b"\n")
            replies = c.recv_line()
            self.assertIsInstance(replies, list)
            self.assertEqual(len(replies), 3)
            by_id = {json.dumps(r["id"]): r for r in replies}
            self.assertIn("result", by_id["1"])
            self.assertEqual(by_id["2"]["error"]["code"], -32601)
            self.assertEqual(by_id["null"]["error"]["code"], -32600)

    def test_batch_of_notifications_is_silent(self):
        with self.idmd.client() as c:
            c.send_raw(b'[{"jsonrpc":"2.0","method":"getServerInfo"}]\n'
                       b'{"jsonrpc":"2.0","id":3,"method":"getServerInfo"}\n')
            self.assertEqual(c.recv_line()["id"], 3)

    def test_batch_limits(self):
        with self.idmd.client() as c:
            c.send_raw(b"[]\n")
            self.assertError(c.recv_line()["error"], -32600, "invalid_request")
            c.send_raw(json.dumps([{"jsonrpc": "2.0", "id": i, "method": "getServerInfo"}
                                   for i in range(6)]).encode() + b"\n")
            self.assertError(c.recv_line()["error"], -32600, "batch_too_large")
            self.assertIn("result", c.request("getServerInfo"))

    def test_parse_errors(self):
        with self.idmd.client() as c:
            for bad in [b"{", b"nonsense", b'{"a":1,"a":2}', b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',
                        b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","params":{"x":"a\\u0000b"}}']:
                c.send_raw(bad + b"\n")
                reply = c.recv_line()
                self.assertIsNone(reply["id"], bad)
                self.assertError(reply["error"], -32700, "parse_error")
            # the connection is still usable
            self.assertIn("result", c.request("getServerInfo"))

    def test_invalid_requests(self):
        cases = [
            b"5", b'"x"', b"null",
            b'{"id":1,"method":"getServerInfo"}',
            b'{"jsonrpc":"1.0","id":1,"method":"getServerInfo"}',
            b'{"jsonrpc":"2.0","id":1,"method":5}',
            b'{"jsonrpc":"2.0","id":{},"method":"getServerInfo"}',
            b'{"jsonrpc":"2.0","id":1.5,"method":"getServerInfo"}',
            b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","extra":1}',
        ]
        with self.idmd.client() as c:
            for bad in cases:
                c.send_raw(bad + b"\n")
                self.assertError(c.recv_line()["error"], -32600, "invalid_request")

    def test_unknown_method(self):
        err = self.idmd.error("noSuchMethod")
        self.assertError(err, -32601, "unknown_method")

    def test_invalid_params(self):
        with self.idmd.client() as c:
            err = c.error("getServerInfo", {"bogus": 1})
            self.assertError(err, -32602, "invalid_params")
            self.assertEqual(err["data"]["param"], "bogus")
            err = c.error("createPublisher", {"name": 5})
            self.assertEqual(err["data"]["param"], "name")
            err = c.error("createPublisher", {})
            self.assertEqual(err["data"]["param"], "name")
            self.assertIn("missing", err["message"])
            err = c.error("createPublisher", {"name": "x" * 300})
            self.assertError(err, -32602, "invalid_params")
            err = c.error("createPublisher", ["positional"])
            self.assertError(err, -32602, "invalid_params")
            c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","params":5}\n')
            self.assertError(c.recv_line()["error"], -32602, "invalid_params")
        # nothing was created by the refused requests
        self.assertEqual(self.idmd.call("listPublishers")["items"], [])

    def test_line_too_long_closes_after_error(self):
        with self.idmd.client() as c:
            c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","params":{"x":"' + b"a" * 8000)
            reply = c.recv_line()
            self.assertError(reply["error"], -32600, "request_too_large")
            self.assertTrue(c.is_closed())
        # a complete line over the limit is refused the same way
        with self.idmd.client() as c:
            c.send_raw(b" " * 4097 + b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo"}\n')
            self.assertError(c.recv_line()["error"], -32600, "request_too_large")
            self.assertTrue(c.is_closed())
        self.assertStillServing()

    def test_slow_reader_is_not_cut_off_as_a_partial_line(self):
        """A client that sends complete lines but reads its replies slowly makes idmd stop reading
        (back-pressure); the line idmd has only half read meanwhile is not an incomplete request:
        the partial-line clock (1 s here) does not run while idmd is not reading."""
        import threading
        n = 3000
        with self.idmd.client() as c:
            data = b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo"}\n' * n
            sender = threading.Thread(target=c.send_raw, args=(data,))
            sender.start()
            time.sleep(2.5)  # longer than partial_line_timeout, while nobody reads
            replies = [c.recv_line() for _ in range(n)]
            sender.join(30)
            self.assertTrue(all(r is not None and "result" in r for r in replies))

    def test_overlong_line_behind_unread_replies(self):
        """Regression: a complete over-limit line arriving while replies wait for a client that
        does not read must not corrupt the input buffer (it once did: a negative memmove)."""
        import threading
        n = 3000
        with self.idmd.client() as c:
            data = (b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo"}\n' * n) + b"A" * 4097 + b"\n"
            sender = threading.Thread(target=c.send_raw, args=(data,))
            sender.start()
            time.sleep(0.5)  # let idmd fill its output while nobody reads
            replies = []
            while True:
                line = c.recv_line()
                if line is None:
                    break
                replies.append(line)
            sender.join(30)
            self.assertEqual(len(replies), n + 1)
            self.assertTrue(all("result" in r for r in replies[:n]))
            self.assertError(replies[-1]["error"], -32600, "request_too_large")
        self.assertStillServing()

    def test_nesting_too_deep(self):
        with self.idmd.client() as c:
            c.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"getServerInfo","params":{"a":' + b"[" * 20 + b"]" * 20 + b"}}\n")
            self.assertError(c.recv_line()["error"], -32600, "too_deep")
            # brackets inside strings do not count
            self.assertError(c.error("getServerInfo", {"x": "[[[[[[[[[[[[[[[[[[[[[[[["}), -32602)
        self.assertStillServing()

    def test_partial_line_timeout(self):
        with self.idmd.client() as c:
            c.send_raw(b'{"jsonrpc":"2.0","id":1,')
            reply = c.recv_line(timeout=30)
            self.assertError(reply["error"], -32600, "timeout")
            self.assertTrue(c.is_closed())
        self.assertStillServing()

    def test_idle_connection_closed(self):
        with self.idmd.client() as c:
            # Taken before the request: idmd's idle clock starts later, at its reply, so a test
            # process stalled after the reply cannot make the close look early.
            start = time.monotonic()
            self.assertIn("result", c.request("getServerInfo"))
            self.assertTrue(c.is_closed(timeout=60))
            self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertStillServing()

    def served_connection(self):
        """A new connection, once idmd serves it: it notices closes asynchronously (the client's
        close, and on PostgreSQL the end of the calls it had in flight), so until then a new
        connection may be refused for too many. The deadline only turns a slot that is never
        given back into a failure."""
        deadline = time.monotonic() + 60
        while True:
            c = self.idmd.client()
            try:
                c.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": "getServerInfo"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass        # refused and closed already: the refusal is still there to read
            reply = c.recv_line()
            if reply is not None and "result" in reply:
                return c
            c.close()
            if reply is not None:
                self.assertError(reply["error"], 429, "too_many_connections")
            self.assertLess(time.monotonic(), deadline, f"a connection was never served: {reply}")
            time.sleep(0.05)

    def test_connections_per_uid(self):
        # The four held connections are idle between their request and the fifth: a test process
        # stalled for idle_timeout (2 s) there lets idmd close one, and the fifth is then rightly
        # served. Only then is the round repeated; a fifth served sooner is a failure.
        for attempt in range(3):
            start = time.monotonic()
            clients = []
            for _ in range(4):
                clients.append(self.served_connection())
                self.addCleanup(clients[-1].close)
            with self.idmd.client() as extra:
                # A refused connection gets its refusal at once and is closed; a served one
                # answers the request (sent either way, so that neither case waits for a line).
                try:
                    extra.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": "getServerInfo"}\n')
                except (BrokenPipeError, ConnectionResetError):
                    pass
                reply = extra.recv_line()
                refused = reply is not None and "error" in reply
                if refused:
                    self.assertError(reply["error"], 429, "too_many_connections")
                    self.assertTrue(extra.is_closed())
            if refused:
                break
            self.assertGreaterEqual(time.monotonic() - start, 2, f"a fifth connection was served: {reply}")
            for c in clients:
                c.close()
        else:
            self.fail("three rounds, and never was a fifth connection refused")
        # one slot is free again, once idmd has noticed the close
        clients[0].close()
        self.served_connection().close()
        for c in clients[1:]:
            c.close()

    def test_stats(self):
        self.idmd.call("getServerInfo")
        self.idmd.error("getServerInfo", {"bad": 1})
        stats = self.idmd.call("getStats")
        info = stats["methods"]["getServerInfo"]
        self.assertGreaterEqual(info["calls"], 2)
        self.assertGreaterEqual(info["errors"], 1)
        self.assertEqual(sum(info["latency"].values()), info["calls"])
        self.assertGreaterEqual(stats["connections"]["current"], 1)
        self.assertIn("login", stats["classes"])
        self.assertIn("publishers", stats["store"]["entries"])

    def test_client_vanishing_mid_request(self):
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.idmd.socket)
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getStats"}\n' * 10)
            s.close()
        self.assertStillServing()


if __name__ == "__main__":
    main()
