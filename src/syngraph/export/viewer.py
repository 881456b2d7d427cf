"""``syngraph view``: serve a working directory on localhost and show it in Neuroglancer.

Two local servers: a small threaded HTTP file server for the working directory (CORS ``*``,
HTTP Range, nothing outside the directory; what ``cloudvolume.server`` and ``igneous view`` do), and
the ``neuroglancer`` package's own viewer server, which ships the Neuroglancer client, so the viewer
works offline. The state comes from :func:`syngraph.export.neuroglancer.viewer_state`.
"""

from __future__ import annotations

import os
import posixpath
import threading
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    """Static files with CORS and single byte-range requests."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "range")
        self.send_header("Access-Control-Expose-Headers", "content-range, content-length")
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server naming)
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().do_GET()
        size = path.stat().st_size
        try:
            a, b = rng.removeprefix("bytes=").split("-")
            start, stop = (int(a), int(b) + 1 if b else size) if a else (size - int(b), size)
        except ValueError:
            self.send_error(416)
            return
        stop = min(stop, size)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        with path.open("rb") as f:
            f.seek(start)
            self.wfile.write(f.read(stop - start))

    def translate_path(self, path: str) -> str:
        # the parent's rule (no '..' escapes), rooted at self.directory
        path = posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0]))
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        return os.path.join(self.directory, *parts)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def serve_directory(directory: str | Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving ``directory`` in a daemon thread; ``server.server_address`` has the port."""
    server = ThreadingHTTPServer((host, port), partial(_Handler, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def open_viewer(state: dict[str, Any], host: str = "127.0.0.1") -> Any:
    """A ``neuroglancer.Viewer`` (served by the package, client included) showing ``state``."""
    import neuroglancer

    neuroglancer.set_server_bind_address(host)
    viewer = neuroglancer.Viewer()
    viewer.set_state(neuroglancer.ViewerState(state))
    return viewer
