#!/usr/bin/env python3
"""lua-resty-exec's plain-Lua (LuaSocket) client, modelled call for call, to count how
often its ez-mode fails a call that succeeded with a spurious 'timeout'.

Modelled on lib/resty/exec/socket.lua (jprjr/lua-resty-exec 3.0.3), outside nginx:
- grab_ns(timeout) reads one netstring: before every read, select() with `timeout`
  (nothing ready: give up with 'timeout'); then a non-blocking receive — one byte at a
  time for the length, up to 8192 for the payload. A read that returns end of file marks
  the connection closed and gives up. (A short payload read still counts as the whole
  8192 bytes, as in the Lua code; the daemon's small pairs never meet that.)
- receive(): 'closed' only if the connection was already marked closed and no pair is
  queued; a queued pair is returned at once; otherwise grab_ns with the full timeout, then
  again with a zero timeout while it succeeds; then a pair if one is complete, else
  'timeout' — even when it was end of file that stopped the loop.
- ez-mode (exec.lua): send args and the stdin terminator, receive until an error;
  'closed' ends the call, 'timeout' fails it (timeout_fatal = true, the default).

  luasocket_client.py SOCKET CALLS [PROGRAM ARG...]  → prints "calls failures"
"""
import select
import socket
import sys


class Client:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.timeout = timeout
        self.closed = False
        self.netstrings = []

    def send(self, *payloads):
        data = b"".join(b"%d:%s," % (len(p), p) for p in payloads)
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def _ready(self, timeout):
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def grab_ns(self, timeout):
        length = 0
        while True:
            if not self._ready(timeout):
                return False
            byte = self.sock.recv(1)
            if byte == b"":
                self.closed = True
                return False
            digit = byte[0] - 48
            if 0 <= digit <= 9:
                length = length * 10 + digit
            else:
                break
        if digit != 10:  # ':'
            raise RuntimeError("netstring violated")
        remaining = length + 1
        chunk = b""
        while remaining > 0:
            want = min(remaining, 8192)
            if not self._ready(timeout):
                return False
            chunk += self.sock.recv(want)
            remaining -= want
        if chunk[-1:] != b",":
            raise RuntimeError("netstring violated")
        self.netstrings.append(chunk[:-1])
        return True

    def _pair(self):
        if len(self.netstrings) >= 2:
            kind, data = self.netstrings[0], self.netstrings[1]
            del self.netstrings[:2]
            return kind, data
        return None

    def receive(self):
        if self.closed and len(self.netstrings) < 2:
            return None, "closed"
        pair = self._pair()
        if pair:
            return pair, None
        attempt = 0
        while self.grab_ns(self.timeout if attempt == 0 else 0):
            attempt += 1
        pair = self._pair()
        if pair:
            return pair, None
        return None, "timeout"


def ez_call(path, argv, timeout=60):
    """One ez-mode call: True when it completed, False when it failed with 'timeout'."""
    client = Client(path, timeout)
    try:
        client.send(str(len(argv)).encode(), *argv, b"")
        exit_seen = False
        while True:
            pair, error = client.receive()
            if error == "closed":
                return exit_seen
            if error == "timeout":
                return False
            if pair[0] in (b"exitcode", b"termsig"):
                exit_seen = True
    finally:
        client.sock.close()


def main():
    path, calls = sys.argv[1], int(sys.argv[2])
    argv = [arg.encode() for arg in sys.argv[3:]] or [b"echo", b"hello"]
    failures = sum(0 if ez_call(path, argv) else 1 for _ in range(calls))
    print(calls, failures)


if __name__ == "__main__":
    main()
