#!/usr/bin/env python3
"""Demo upstream for the quick start: a tiny HTTP/1.1 server that answers every request with
what it received (method, path, headers, body), so you can see what crossed the proxy pair."""
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        text = f"demo upstream got: {self.command} {self.path}\n"
        text += "".join(f"  {k}: {v}\n" for k, v in self.headers.items())
        if body:
            text += f"  body: {body.decode(errors='replace')}\n"
        out = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo)
    sys.stderr.write(f"upstream: listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    server.serve_forever()
