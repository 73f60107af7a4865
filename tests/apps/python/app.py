"""Sample python app: greets with a function from a dependency installed from wheels/."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

import gitpaas_hello


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = gitpaas_hello.greet("python").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
