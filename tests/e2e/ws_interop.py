#!/usr/bin/env python3
"""WebSocket through the ptproxy pair with a real WebSocket library: Python `websockets`
(from PyPI, installed by .ci/prereqs). Driven by tests/e2e/websocket_interop.rs, which asserts
on the lines printed here.

  ws_interop.py server        the upstream (service B): prints "listening PORT", then one
                              "server: ..." line per connection and event
  ws_interop.py client URI    service A, through the ptproxy client: one "ok ..." line per
                              check passed; "FAIL ..." and exit 1 on the first that fails

The client's checks, on two connections: subprotocol negotiation (it offers superchat, chat;
the server speaks chat), permessage-deflate negotiated end to end, text (non-ASCII), binary
and fragmented messages echoed exactly, a ping from each side answered by a pong, and the
close handshake started by each side with its code and reason arriving intact, the TCP end
following at once (a close that had to wait for close_timeout is a failure).
"""

import sys
import time

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
    from websockets.sync.server import serve
except ImportError as e:
    print(f"FAIL the Python websockets module is missing ({e}): run .ci/prereqs", flush=True)
    sys.exit(3)

TIMEOUT = 10
TEXT = "héllo wörld ✓ through ptproxy"
BINARY = bytes(range(256)) * 64  # 16 KiB, every byte value


def say(line):
    print(line, flush=True)


def fail(what):
    say(f"FAIL {what}")
    sys.exit(1)


def close_frame(frame):
    return "none" if frame is None else f"{frame.code} {frame.reason!r}"


def handler(ws):
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    say(f"server: path {ws.request.path} subprotocol {ws.subprotocol} extensions {extensions}")
    try:
        for message in ws:
            if message == "ping me":
                answered = ws.ping(b"from the server").wait(TIMEOUT)
                say(f"server: pong {'ok' if answered else 'missing'}")
                ws.send("pinged you")
            elif message == "close me":
                ws.close(4002, "server says bye")
            else:
                ws.send(message)
    except ConnectionClosed:
        pass
    p = ws.protocol
    say(
        f"server: closed rcvd {close_frame(p.close_rcvd)} sent {close_frame(p.close_sent)}"
        f" rcvd_then_sent {p.close_rcvd_then_sent}"
    )


def run_server():
    with serve(handler, "127.0.0.1", 0, subprotocols=["chat"], max_size=None) as server:
        say(f"listening {server.socket.getsockname()[1]}")
        server.serve_forever()


def echo(ws, message, what):
    ws.send(message)
    got = ws.recv(timeout=TIMEOUT)
    if got != message:
        fail(f"{what}: sent {len(message)}, got back {got!r:.80}")
    say(f"ok {what}")


def open_client(uri):
    return connect(
        uri,
        subprotocols=["superchat", "chat"],
        proxy=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        max_size=None,
    )


def timed_close(started, what):
    took = time.monotonic() - started
    if took > TIMEOUT / 2:
        fail(f"{what}: the close took {took:.1f} s (the TCP end was not carried)")


def run_client(base):
    with open_client(f"{base}/interop/one") as ws:
        if ws.subprotocol != "chat":
            fail(f"subprotocol {ws.subprotocol!r}, not 'chat'")
        say("ok subprotocol chat")
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        if "permessage-deflate" not in extensions:
            fail(f"extensions {extensions!r}: permessage-deflate not negotiated")
        say("ok extensions permessage-deflate")
        echo(ws, TEXT, "text")
        echo(ws, BINARY, "binary")
        ws.send(["frag", "mented ", "text"])
        if ws.recv(timeout=TIMEOUT) != "fragmented text":
            fail("fragmented message")
        say("ok fragmented")
        if not ws.ping(b"from the client").wait(TIMEOUT):
            fail("no pong for the client's ping")
        say("ok pong from the server")
        ws.send("ping me")  # the server pings, the library answers, the server says so
        if ws.recv(timeout=TIMEOUT) != "pinged you":
            fail("the server's ping")
        say("ok pong to the server")
        started = time.monotonic()
        ws.close(4001, "client says bye")
        timed_close(started, "client close")
        p = ws.protocol
        rcvd, sent = close_frame(p.close_rcvd), close_frame(p.close_sent)
        if (sent, rcvd, p.close_rcvd_then_sent) != (
            "4001 'client says bye'",
            "4001 'client says bye'",
            False,
        ):
            fail(f"client close: sent {sent} rcvd {rcvd} rcvd_then_sent {p.close_rcvd_then_sent}")
        say(f"ok client close: sent {sent} rcvd {rcvd}")

    with open_client(f"{base}/interop/two") as ws:
        started = time.monotonic()
        ws.send("close me")
        try:
            got = ws.recv(timeout=TIMEOUT)
            fail(f"a message {got!r:.80} instead of the server's close")
        except ConnectionClosed as e:
            timed_close(started, "server close")
            rcvd, sent = close_frame(e.rcvd), close_frame(e.sent)
            if (rcvd, sent, e.rcvd_then_sent) != (
                "4002 'server says bye'",
                "4002 'server says bye'",
                True,
            ):
                fail(f"server close: rcvd {rcvd} sent {sent} rcvd_then_sent {e.rcvd_then_sent}")
            say(f"ok server close: rcvd {rcvd} sent {sent}")
    say("ok all")


def main():
    if sys.argv[1:2] == ["server"]:
        run_server()
    elif len(sys.argv) == 3 and sys.argv[1] == "client":
        run_client(sys.argv[2])
    else:
        fail(f"usage: {sys.argv[0]} server | client ws://HOST:PORT")


if __name__ == "__main__":
    main()
