"""The dashboard's HTTP side: a Starlette app on uvicorn, one SSE stream per page, JSON endpoints for
the buttons, and the guard that keeps other sites and other hosts away from a page that can kill
containers (Host allow-list against DNS rebinding, same-origin only, a per-run token on every change)."""
from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import secrets
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.web.controls import Controls
from pgha_lab.web.hub import Cursor, Hub
from pgha_lab.web.state import LabReader, Ticker, page_title
from pgha_lab.web.writeprobe import WriteProbe

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "x-pgha-token"
SAFE_METHODS = {"GET", "HEAD"}
KEEPALIVE_S = 15.0
FIRST_VIEW_WAIT_S = 10.0


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def allowed_hosts(bind: str, port: int) -> set[str]:
    """Host header values the server answers to: the bound address, localhost and 127.0.0.1, with the port."""
    names = {bind, "localhost", "127.0.0.1"}
    out = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        out.add(f"{shown}:{port}".lower())
    return out


class Guard:
    """ASGI middleware: every request must name an allowed Host; every state-changing request must come
    from the page's own origin and carry the token."""

    def __init__(self, app: ASGIApp, hosts: set[str], token: str) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = {f"http://{h}" for h in hosts}
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        reason = self.refusal(scope["method"], headers)
        if reason:
            await PlainTextResponse(reason, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, method: str, headers: dict[str, str]) -> str:
        if headers.get("host", "").lower() not in self.hosts:
            return "refused: this dashboard answers only to " + ", ".join(sorted(self.hosts)) + ".\n"
        if method in SAFE_METHODS:
            return ""
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            return "refused: a request from another origin cannot change the lab.\n"
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "refused: a cross-site request cannot change the lab.\n"
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), self.token):
            return "refused: changing the lab needs the token from the URL `pgha-lab dashboard` printed.\n"
        return ""


class _Server(uvicorn.Server):
    """uvicorn's server, remembering a Ctrl-C. uvicorn shuts down cleanly and raises the signal again
    after restoring the handler it found; a process whose parent ignored SIGINT (an xdist worker, a
    shell's background job) inherits SIG_IGN, so that raise did nothing and the command exited 0."""
    interrupted = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.interrupted = self.interrupted or sig == signal.SIGINT
        super().handle_exit(sig, frame)


@dataclass
class Settings:
    bind: str = "127.0.0.1"
    port: int = 8088
    interval_s: float = 0.5         # one reading of the lab per tick, for every viewer
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def url_with_token(self) -> str:
        return f"{self.url}?token={self.token}"


class Dashboard:
    """One lab's dashboard: the reading loop, the hub, the controls and the app that serves them."""

    def __init__(self, home: Path | str, project: str, settings: Settings) -> None:
        # Two contexts: the reading loop and the buttons each get their own HTTP sessions.
        self.settings = settings
        self.ctx = LabContext.open(home, project)
        reader_ctx = LabContext.open(home, project)
        self.hub = Hub()
        self.probe = WriteProbe(self.ctx)
        self.reader = LabReader(reader_ctx)
        self.controls = Controls(self.ctx, self.hub, after_action=self.reader.recheck_faults)
        self.ticker = Ticker(self.reader,
                             lambda view: self.hub.publish(view, self.probe.new_points(), self.probe.status()),
                             settings.interval_s)
        self.app = self._app()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- the app --------------------------------------------------------------------------------
    def _app(self) -> ASGIApp:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(app: Starlette):
            self.hub.bind(asyncio.get_running_loop())
            self.ticker.start()
            try:
                yield
            finally:
                await run_in_threadpool(self._shutdown_threads)

        routes = [
            Route("/", self.index),
            Route("/api/state", self.state),
            Route("/api/stream", self.stream),
            Route("/api/drills", self.drills),
            Route("/drills/{rel:path}", self.report_file),
            Route("/api/session", self.session, methods=["POST"]),
            Route("/api/chaos", self.chaos, methods=["POST"]),
            Route("/api/role", self.role, methods=["POST"]),
            Route("/api/probe", self.probe_switch, methods=["POST"]),
            Route("/api/drill", self.drill, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        app = Starlette(routes=routes, lifespan=lifespan)
        return Guard(app, allowed_hosts(self.settings.bind, self.settings.port), self.settings.token)

    def _shutdown_threads(self) -> None:
        self.ticker.stop()
        if self.probe.running:
            self.probe.stop()

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def _full(self) -> dict[str, Any]:
        return {**self.hub.message(Cursor()), "catalogue": self.controls.catalogue(), "project": self.ctx.project,
                "title": page_title(self.ctx.project)}

    async def state(self, request: Request) -> Response:
        return JSONResponse(self._full())

    async def stream(self, request: Request) -> Response:
        async def messages():
            # A page opened before the first reading of the lab waits for it (a tick, seconds on a loaded
            # machine) rather than drawing an empty map under "connecting...".
            waited = 0.0
            while self.hub.view is None and waited < FIRST_VIEW_WAIT_S:
                await self.hub.wait_newer(self.hub.version, 0.5)
                waited += 0.5
            cursor = Cursor()
            first = {**self.hub.message(cursor), "catalogue": self.controls.catalogue(), "project": self.ctx.project,
                     "title": page_title(self.ctx.project)}
            yield {"event": "state", "data": json.dumps(first)}
            while True:
                version = cursor.version
                await self.hub.wait_newer(version, KEEPALIVE_S)
                if self.hub.version != version:
                    yield {"event": "state", "data": json.dumps(self.hub.message(cursor))}
        return EventSourceResponse(messages(), ping=KEEPALIVE_S)

    async def drills(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.controls.drill_reports))

    async def report_file(self, request: Request) -> Response:
        try:
            path = self.controls.report_file(request.path_params["rel"])
        except LabError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        media = "text/plain; charset=utf-8" if path.suffix in (".md", ".csv") else None
        return FileResponse(path, media_type=media)

    async def session(self, request: Request) -> Response:
        return JSONResponse({"controls": True})   # the guard let it through: the token is right

    async def _act(self, request: Request, action) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"error": "the request body must be a JSON object."}, status_code=400)
        try:
            result = await run_in_threadpool(action, body)
        except LabError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(result)

    async def chaos(self, request: Request) -> Response:
        def act(body: dict[str, Any]) -> dict[str, Any]:
            task = self.controls.chaos(str(body.get("action", "")), body.get("target"), peers=body.get("peers") or None,
                                       clear=bool(body.get("clear")), loss=body.get("loss") or None,
                                       delay=body.get("delay") or None, rate=body.get("rate") or None)
            return {"task": task.id, "done": task.done, "expected": task.expected}
        return await self._act(request, act)

    async def role(self, request: Request) -> Response:
        def act(body: dict[str, Any]) -> dict[str, Any]:
            task = self.controls.role_change(str(body.get("kind", "")), body.get("to") or None)
            return {"task": task.id, "done": task.done}
        return await self._act(request, act)

    async def probe_switch(self, request: Request) -> Response:
        def act(body: dict[str, Any]) -> dict[str, Any]:
            if body.get("run"):
                run = self.probe.start()
                self.hub.log("probe", f"write probe started (run {run}): an insert through HAProxy every ~100 ms")
            else:
                self.probe.stop()
                self.hub.log("probe", "write probe stopped")
            return {"running": self.probe.running}
        return await self._act(request, act)

    async def drill(self, request: Request) -> Response:
        def act(body: dict[str, Any]) -> dict[str, Any]:
            task = self.controls.drill(str(body.get("scenario", "")))
            return {"task": task.id}
        return await self._act(request, act)

    # -- serving --------------------------------------------------------------------------------
    def listen(self) -> socket.socket:
        """The bound socket, or LabError in one sentence (port in use, address not on this host)."""
        s = self.settings
        family = socket.AF_INET6 if ":" in s.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((s.bind, s.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise LabError(f"port {s.port} on {s.bind} is already in use; choose another with --port.") from None
            raise LabError(f"cannot listen on {s.bind}:{s.port} ({exc.strerror}); "
                           "choose another --bind or --port.") from None
        sock.listen(128)
        if s.port == 0:
            s.port = sock.getsockname()[1]
            self.app = self._app()   # the Host allow-list needs the real port
        return sock

    def _uvicorn(self) -> _Server:
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)
        return _Server(config)

    def serve(self, sock: socket.socket) -> None:
        """Serve on a socket from listen(), in the foreground until Ctrl-C, which then ends it as it ends
        every command (KeyboardInterrupt: exit 130, "interrupted")."""
        server = self._uvicorn()
        server.run(sockets=[sock])
        if server.interrupted:
            raise KeyboardInterrupt

    def start_in_thread(self) -> str:
        """Serve from a thread (tests, benches); returns the URL once the server accepts requests."""
        sock = self.listen()
        self._server = server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="dashboard-server", daemon=True)
        self._thread.start()
        from pgha_lab.wait import wait_until
        if not wait_until(lambda: server.started, 30, 0.05).ok:
            raise LabError("the dashboard server did not start within 30s.")
        return self.settings.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(15)
