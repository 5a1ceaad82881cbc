"""Static HTML viewer for pairs: written next to a dataset, served by `voicetune view`."""

from __future__ import annotations

import functools
import json
import shutil
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from voicetune.errors import UserError

STATIC = ("index.html", "viewer.js", "viewer.css")
# run dir -> dataset folder -> viewer/ (runs may link the dataset one level deeper).
SEARCH_DEPTH = 3


def write(dest: Path, data: dict) -> Path:
    """Copy the static page into `dest` with its data as data.js; return index.html."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in STATIC:
        shutil.copyfile(Path(__file__).parent / name, dest / name)
    # A script setting a global (not fetched JSON) so the page also works from file://.
    payload = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    (dest / "data.js").write_text(f"window.VOICETUNE_DATA = {payload};\n", encoding="utf-8")
    return dest / "index.html"


def find(path: Path) -> Path:
    """The folder holding a viewer's index.html, at or up to 3 levels under `path`."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (pass a run, dataset or viewer folder)")
    if (path / "index.html").exists() and (path / "data.js").exists():
        return path
    for depth in range(SEARCH_DEPTH):
        # Shallowest match wins; sorted so the same folder is picked every time.
        hits = sorted(path.glob("/".join(["*"] * depth + ["viewer", "index.html"])))
        if hits:
            return hits[0].parent
    raise UserError(f"{path}: no viewer/index.html here or {SEARCH_DEPTH} levels below")


def make_server(folder: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server for `folder` on 127.0.0.1 (port 0 picks a free one)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror})") from None


def serve(folder: Path, port: int, open_browser: bool) -> None:
    """Serve `folder` until Ctrl-C, printing the URL (and opening it unless told not to)."""
    server = make_server(folder, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    print(f"serving {folder} at {url} (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
