"""Example container plugin in Python (stdlib only): HTTP/1.1 on the Unix socket the daemon proxies to.

The daemon forwards /plugin/container-python/api/<path> here as /<path>; GET /__health must answer 200.
"""
import json
import os
import signal
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

SOCKET = os.environ.get("PLUGIN_SOCKET", "/run/plugin/plugin.sock")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the daemon's connection pool

    def address_string(self):  # AF_UNIX peers have no address
        return "daemon"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path == "/__health":
            return self.reply(200, {"status": "ok"})
        if self.path.startswith("/hello"):
            return self.reply(200, {"hello": "from python", "uid": os.getuid(), "python": sys.version.split()[0]})
        return self.reply(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/echo":
            return self.reply(200, body, self.headers.get("content-type") or "application/octet-stream")
        return self.reply(404, {"error": {"code": "not_found", "message": self.path}})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    # PID 1 in the container ignores SIGTERM unless it installs a handler: stop promptly on `podman stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.unlink(SOCKET)
    except FileNotFoundError:
        pass
    with Server(SOCKET, Handler) as httpd:
        httpd.serve_forever()
