#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A real QMP client (python3 stdlib only) for tests/cli/test_control.c.
It speaks to `hptmig --control unix:PATH` as a QMP client speaks to QEMU:
greeting, qmp_capabilities, then commands; every reply is checked against
QMP's shape. Exit 0 when every check held, else 1 with one line on stderr.

  qmp_client.py errors SOCK          protocol and error classes
  qmp_client.py live SRC DEST        a live run: query, change max-bandwidth
                                     (rate observed in true byte counts),
                                     query the destination, cancel
  qmp_client.py proxy SOCK           `hptmig proxy --control`: side proxy,
                                     bytes growing, no parameters, cancel
  qmp_client.py idle SOCK SECONDS    the idle timeout: a silent client is
                                     told and closed after SECONDS, one that
                                     keeps talking is not
"""
import json
import socket
import sys
import time


class QMPError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise QMPError(what)


class QMP:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.greeting = self.recv()

    def recv(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise QMPError("connection closed by the server")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, data):
        self.sock.sendall(data)
        return self.recv()

    def cmd(self, name, args=None, id=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        if id is not None:
            msg["id"] = id
        return self.send_raw(json.dumps(msg).encode() + b"\n")

    def ok(self, name, args=None):
        r = self.cmd(name, args)
        check("return" in r, "%s: expected a return, got %r" % (name, r))
        return r["return"]

    def negotiate(self):
        check(self.ok("qmp_capabilities") == {}, "qmp_capabilities returns {}")

    def close(self):
        self.sock.close()


def expect_error(r, cls, what, id=None):
    check("error" in r, "%s: expected an error, got %r" % (what, r))
    e = r["error"]
    check(set(e) == {"class", "desc"}, "%s: error members %r" % (what, sorted(e)))
    check(e["class"] == cls, "%s: class %s, expected %s" % (what, e["class"], cls))
    check(isinstance(e["desc"], str) and e["desc"], "%s: desc" % what)
    if id is not None:
        check(r.get("id") == id, "%s: id %r not echoed (%r)" % (what, id, r))


def check_greeting(g):
    check(set(g) == {"QMP"}, "greeting %r" % g)
    q = g["QMP"]
    check(q.get("capabilities") == [], "greeting capabilities %r" % q)
    v = q["version"]["qemu"]
    check(all(isinstance(v[k], int) for k in ("major", "minor", "micro")), "version %r" % v)
    check(isinstance(q["version"]["package"], str), "package")


def scenario_errors(path):
    c = QMP(path)
    check_greeting(c.greeting)
    # Before negotiation every other command is CommandNotFound, as QEMU.
    first = c.cmd("query-migrate", id="a1")
    expect_error(first, "CommandNotFound", "before caps", "a1")
    expect_error(c.send_raw(b"{not json\n"), "GenericError", "bad JSON")
    expect_error(c.send_raw(b"[1,2]\n"), "GenericError", "not an object")
    expect_error(c.send_raw(b'{"id": 5}\n'), "GenericError", "no execute", 5)
    expect_error(c.send_raw(b'{"execute": "query-migrate", "bogus": 1}\n'), "GenericError",
                 "unexpected member")
    expect_error(c.send_raw(b'{"execute": "qmp_capabilities", "arguments": 3}\n'),
                 "GenericError", "arguments not an object")
    c.negotiate()
    expect_error(c.cmd("qmp_capabilities", id=2), "CommandNotFound", "caps twice", 2)
    expect_error(c.cmd("no-such-command", id={"x": [1]}), "CommandNotFound", "unknown",
                 {"x": [1]})
    expect_error(c.cmd("migrate-set-parameters", {"colour": 1}, id=3), "GenericError",
                 "unknown parameter", 3)
    expect_error(c.cmd("migrate-set-parameters", {"max-bandwidth": "fast"}), "GenericError",
                 "string bandwidth")
    expect_error(c.cmd("migrate-set-parameters", {"max-bandwidth": -1}), "GenericError",
                 "negative bandwidth")
    expect_error(c.cmd("migrate-set-parameters", {"downtime-limit": 0}), "GenericError",
                 "zero downtime limit")
    expect_error(c.cmd("query-migrate", {"x": 1}), "GenericError", "arguments to a query")
    # An over-long line is refused and skipped; the connection goes on.
    expect_error(c.send_raw(b'{"execute": "' + b"x" * 5000 + b'"}\n'), "GenericError",
                 "over-long line")
    r = c.cmd("query-migrate", id=9)
    check(r.get("id") == 9 and "status" in r["return"], "query after a long line: %r" % r)
    params = c.cmd("query-migrate-parameters")
    # A second client at the same time is served too.
    d = QMP(path)
    check_greeting(d.greeting)
    d.negotiate()
    check("status" in d.ok("query-migrate"), "second client")
    p = d.ok("query-migrate-parameters")
    check(set(p) == {"max-bandwidth", "downtime-limit"}, "parameters %r" % p)
    d.close()
    # At most 8 clients at once: the ninth is told so and closed.
    time.sleep(0.1)  # (the server notices d's close)
    more = [QMP(path) for _ in range(7)]
    for m in more:
        check_greeting(m.greeting)
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.settimeout(10)
    extra.connect(path)
    data = b""
    while True:
        chunk = extra.recv(4096)
        if not chunk:
            break
        data += chunk
    extra.close()
    expect_error(json.loads(data.split(b"\n")[0]), "GenericError", "ninth client")
    for m in more:
        m.close()
    # A client that sends without reading its replies is dropped, and the
    # server goes on serving the others.
    flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    flood.settimeout(10)
    flood.connect(path)
    line = b'{"execute":"no-such-command-' + b"y" * 3000 + b'"}\n'
    try:
        for _ in range(20000):
            flood.sendall(line)
    except OSError:
        pass  # dropped: the server closed it
    flood.close()
    check("status" in c.ok("query-migrate"), "served after a flood")
    c.close()
    # The objects seen, for the schema check of test_control.c.
    print(json.dumps({"qmp-greeting": c.greeting, "qmp-error": first, "qmp-return": r,
                      "query-migrate": r["return"],
                      "query-migrate-parameters": params["return"]}))


def wait_status(c, want, timeout):
    end = time.monotonic() + timeout
    while True:
        r = c.ok("query-migrate")
        if r["status"] in want:
            return r
        check(time.monotonic() < end, "status %s not reached (last %r)" % (want, r))
        time.sleep(0.05)


def rate(c, seconds):
    """Bytes per second from two query-migrate answers (true byte counts)."""
    a = c.ok("query-migrate")
    t0 = time.monotonic()
    time.sleep(seconds)
    b = c.ok("query-migrate")
    t1 = time.monotonic()
    check(b["status"] == "active", "still active after the window: %r" % b)
    return (b["ram"]["transferred"] - a["ram"]["transferred"]) / (t1 - t0)


def cancel(c):
    """migrate_cancel, then the last query-migrate answer: the process ends
    right after the cancel and closes the socket, so it says cancelled, or
    the socket is gone (None)."""
    check(c.ok("migrate_cancel") == {}, "migrate_cancel returns {}")
    last = None
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            last = c.ok("query-migrate")
            if last["status"] == "cancelled":
                break
            time.sleep(0.02)
    except (QMPError, OSError):
        pass
    return last


def scenario_live(src, dest):
    c = QMP(src)
    check_greeting(c.greeting)
    c.negotiate()
    r = wait_status(c, ("active",), 30)
    for k in ("transferred", "remaining", "total", "mbps", "dirty-pages-rate"):
        check(k in r["ram"], "query-migrate ram lacks %s: %r" % (k, r))
    for k in ("total-time", "setup-time", "expected-downtime", "downtime"):
        check(k in r, "query-migrate lacks %s" % k)
    check(r["downtime"] is None, "downtime unknown while active")
    slow = rate(c, 1.0)
    check(c.ok("migrate-set-parameters", {"max-bandwidth": 256 * 1024}) == {}, "set")
    check(c.ok("query-migrate-parameters")["max-bandwidth"] == 256 * 1024, "param")
    time.sleep(0.2)  # the next round takes it
    fast = rate(c, 0.5)
    check(c.ok("migrate-set-parameters", {"max-bandwidth": 32 * 1024,
                                          "downtime-limit": 250}) == {}, "set back")
    check(fast > 4 * slow, "bandwidth change not seen: %.0f B/s then %.0f B/s" % (slow, fast))
    # The destination's socket answers too, as a destination.
    d = QMP(dest)
    d.negotiate()
    dr = d.ok("query-migrate")
    check(dr["status"] in ("active", "setup") and dr["side"] == "destination", "dest %r" % dr)
    expect_error(d.cmd("migrate-set-parameters", {"max-bandwidth": 1}), "GenericError",
                 "set on the destination")
    d.close()
    last = cancel(c)
    print(json.dumps({"scenario": "live", "slow": slow, "fast": fast,
                      "last": last["status"] if last else None}))
    check(last is None or last["status"] in ("active", "cancelled"), "after cancel %r" % last)


def scenario_proxy(path):
    c = QMP(path)
    check_greeting(c.greeting)
    c.negotiate()
    r = wait_status(c, ("active",), 30)
    check(r["side"] == "proxy", "side %r" % r)
    for k in ("transferred", "remaining", "total", "mbps", "dirty-pages-rate"):
        check(k in r["ram"], "query-migrate ram lacks %s: %r" % (k, r))
    check(r["ram"]["remaining"] is None and r["downtime"] is None, "unknowns are null: %r" % r)
    check(isinstance(r["setup-time"], int), "setup-time once active: %r" % r)
    time.sleep(0.5)
    r2 = c.ok("query-migrate")
    check(r2["ram"]["transferred"] > r["ram"]["transferred"], "bytes do not grow: %r %r" % (r, r2))
    expect_error(c.cmd("migrate-set-parameters", {"max-bandwidth": 1}), "GenericError",
                 "set on a proxy")
    expect_error(c.cmd("query-migrate-parameters"), "GenericError", "parameters of a proxy")
    last = cancel(c)
    print(json.dumps({"scenario": "proxy", "first": r, "second": r2,
                      "last": last["status"] if last else None}))
    check(last is None or last["status"] in ("active", "cancelled"), "after cancel %r" % last)


def scenario_idle(path, seconds):
    quiet, chatty = QMP(path), QMP(path)
    check_greeting(quiet.greeting)
    quiet.negotiate()
    chatty.negotiate()
    t0 = time.monotonic()
    # the chatty one sends a command every half timeout, for twice the timeout
    while time.monotonic() - t0 < 2 * seconds:
        check("status" in chatty.ok("query-migrate"), "chatty client served")
        time.sleep(seconds / 2)
    # the quiet one was told why, then closed
    quiet.sock.settimeout(seconds + 5)
    r = quiet.recv()
    expect_error(r, "GenericError", "idle client")
    check("idle" in r["error"]["desc"], "idle desc %r" % r)
    closed = False
    try:
        closed = quiet.sock.recv(1) == b""
    except OSError:
        closed = True
    check(closed, "the idle client's connection is closed")
    check("status" in chatty.ok("query-migrate"), "chatty client still served")
    print(json.dumps({"scenario": "idle", "desc": r["error"]["desc"],
                      "chatty_s": round(time.monotonic() - t0, 2)}))


def main():
    try:
        if len(sys.argv) == 3 and sys.argv[1] == "errors":
            scenario_errors(sys.argv[2])
        elif len(sys.argv) == 4 and sys.argv[1] == "live":
            scenario_live(sys.argv[2], sys.argv[3])
        elif len(sys.argv) == 3 and sys.argv[1] == "proxy":
            scenario_proxy(sys.argv[2])
        elif len(sys.argv) == 4 and sys.argv[1] == "idle":
            scenario_idle(sys.argv[2], float(sys.argv[3]))
        else:
            sys.stderr.write("usage: qmp_client.py errors SOCK | live SRC DEST | proxy SOCK | "
                             "idle SOCK SECONDS\n")
            return 2
    except (QMPError, OSError, ValueError, KeyError) as e:
        sys.stderr.write("qmp_client: %s: %s\n" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
