"""How the track's checks read a lab the way a human grader would: logged in on a node (files the
learner wrote, systemd, journalctl, the tools installed there, run as root as `sudo` would), and from
the host over the network (TLS handshakes and the certificates presented, PostgreSQL through HAProxy).
Each reading names its source. Private keys never leave a node: only their public half is read."""
from __future__ import annotations

import base64
import json
import shlex
import socket
import ssl
import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.gateway import engine_refusal
from pgha_lab.track.model import Reading, Source

EXEC_TIMEOUT = 120
COMMAND_TIMEOUT = 40   # one command of a visit (exit status 124 when it ran out)
NET_TIMEOUT = 4.0
MARK = "@@pgha-track@@"   # separates the parts of one node's answer

# A small HTTPS client run with the node's own python3: the grader's curl, with the certificate files
# the learner's configuration names (they stay on the node).
HTTPS_CLIENT = r"""
import json, ssl, sys, urllib.request, urllib.error
a = json.loads(sys.argv[1])
try:
    c = ssl.create_default_context(cafile=a.get("ca") or None)
    c.check_hostname = a.get("check_hostname", True)
    if not a.get("ca"):
        c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
    if a.get("cert"):
        c.load_cert_chain(a["cert"], a.get("key") or None)
    body = a.get("body")
    r = urllib.request.Request(a["url"], data=body.encode() if body is not None else None,
                               method=a.get("method", "GET"), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, context=c, timeout=a.get("timeout", 4)) as f:
        print(json.dumps({"status": f.status, "body": f.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except Exception as e:
    print(json.dumps({"status": None, "error": f"{type(e).__name__}: {e}"}))
"""


class Reader:
    """Readings of one lab. Node commands go through the lab's node control (as ssh would)."""

    def __init__(self, ctx: LabContext, since: str = "") -> None:
        self.ctx = ctx
        self.docker = ctx.docker
        # When the learner got to the course's tests (the track's record of step 6 passing): what the
        # logs say before it belongs to the build, not to the tests.
        self.since = since

    # -- on a node --------------------------------------------------------------------------------
    def run(self, node: str, script: str, what: str | None = None, user: str | None = None,
            timeout: float = EXEC_TIMEOUT) -> Reading:
        """A shell command on the node; value {rc, out, err}. `what` is the command as the learner
        would type it (the script may be the grader's longer spelling of it)."""
        source = Source("command", node, what or script)
        try:
            proc = self.docker.exec(node, "bash", "-c", script, check=False, user=user, timeout=timeout)
        except LabError:
            return Reading(source, False, error=f"{node} did not answer within {timeout:.0f}s", unanswered=True)
        refused = engine_refusal(proc)
        if refused is not None:
            if "is not running" in refused:   # powered off: a state a step may judge (step 7's leader cut)
                return Reading(source, False, error=f"{node} is not running")
            return Reading(source, False, error=f"{node} could not be read: {refused[:300]}", unanswered=True)
        return Reading(source, True, {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr})

    def files(self, node: str, texts: Iterable[str] = (), certs: Iterable[str] = (), keys: Iterable[str] = (),
              commands: dict[str, tuple[str, str]] | None = None) -> dict[str, Reading]:
        """One visit to a node for several readings, keyed "text:PATH", "cert:PATH", "key:PATH" and
        "cmd:NAME". A file: its owner, group, mode and type, and its text; for a certificate the first
        certificate it holds (so a combined .pem's key is never read); for a private key only its public
        half (`openssl pkey -pubout`); a missing file reads as not ok. A command (NAME -> (script, what
        the learner would type)): its output (stdout and stderr together) and exit status."""
        fetch = {"text": "base64 -w0 {q}", "cert": "openssl x509 -in {q} 2>&1 | base64 -w0",
                 "key": "openssl pkey -in {q} -pubout 2>&1 | base64 -w0"}
        wanted = [(mode, p) for mode, group in (("text", texts), ("cert", certs), ("key", keys)) for p in group]
        wanted = list(dict.fromkeys(wanted))
        commands = commands or {}
        parts = []
        for mode, p in wanted:
            q = shlex.quote(p)
            parts.append(f"echo '{MARK} {mode}:{p}'; if [ -e {q} ]; then stat -L -c '%U %G %a %F' {q}; "
                         f"{fetch[mode].format(q=q)}; echo; else echo missing; fi")
        for name, (script, _) in commands.items():
            # Each command gets COMMAND_TIMEOUT, so one that hangs (a client waiting on a dead peer)
            # is read as what it is instead of costing the whole visit.
            parts.append(f"echo '{MARK} cmd:{name}'; ( timeout {COMMAND_TIMEOUT} bash -c {shlex.quote(script)} ) "
                         f"2>&1 </dev/null | base64 -w0; "
                         f"rc=${{PIPESTATUS[0]}}; echo; echo $rc")
        reading = self.run(node, "; ".join(parts) or "true")
        chunks = _split(reading.value["out"]) if reading.ok else {}
        # Every part echoes its mark whatever it finds: a mark not there is an answer cut short, not a
        # missing file.
        cut_short = f"{node}'s answer to the check was cut short (exit status {reading.value['rc']})" \
            if reading.ok else ""
        out: dict[str, Reading] = {}
        for name, (_, what) in commands.items():
            k = f"cmd:{name}"
            source = Source("command", node, what)
            lines = chunks.get(k, [])
            if not reading.ok:
                out[k] = Reading(source, False, error=reading.error, unanswered=reading.unanswered)
                continue
            if len(lines) < 2:
                out[k] = Reading(source, False, error=cut_short, unanswered=True)
                continue
            text = base64.b64decode(lines[0] or b"").decode(errors="replace")
            out[k] = Reading(source, True, {"rc": int(lines[1]) if lines[1].strip().isdigit() else None,
                                            "out": text})
        for mode, p in wanted:
            k = f"{mode}:{p}"
            source = Source("file", node, p)
            if not reading.ok:
                out[k] = Reading(source, False, error=reading.error, unanswered=reading.unanswered)
                continue
            if k not in chunks:
                out[k] = Reading(source, False, error=cut_short, unanswered=True)
                continue
            lines = chunks[k]
            if not lines or lines[0] == "missing":
                out[k] = Reading(source, False, error=f"{p} does not exist on {node}")
                continue
            owner, group, fmode, kind = (lines[0].split(" ", 3) + ["", "", "", ""])[:4]
            text = base64.b64decode("".join(lines[1:2]) or b"").decode(errors="replace")
            out[k] = Reading(source, True, {"owner": owner, "group": group, "mode": fmode, "type": kind,
                                            "text": text})
        return out

    def file(self, node: str, path: str) -> Reading:
        return self.files(node, texts=[path])[f"text:{path}"]

    def https(self, node: str, url: str, *, ca: str | None, cert: str | None = None, key: str | None = None,
              method: str = "GET", body: str | None = None, what: str | None = None) -> Reading:
        """An HTTPS request made on the node with the node's own certificate files; value {status, body}
        or {status: None, error}."""
        args = json.dumps({"url": url, "ca": ca, "cert": cert, "key": key, "method": method, "body": body,
                           "timeout": NET_TIMEOUT})
        r = self.run(node, f"python3 -c {shlex.quote(HTTPS_CLIENT)} {shlex.quote(args)}", what=what or
                     f"curl --cacert {ca} {f'--cert {cert} --key {key} ' if cert else ''}"
                     f"{'-X ' + method + ' ' if method != 'GET' else ''}{url}")
        if not r.ok:
            return r
        try:
            value = json.loads(r.value["out"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Reading(r.source, False, error=(r.value["err"] or r.value["out"]).strip()[-300:])
        return Reading(r.source, True, value)

    def many(self, jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run independent readings side by side (each node visit costs a process start)."""
        with ThreadPoolExecutor(max_workers=max(1, min(12, len(jobs)))) as pool:
            futures = {k: pool.submit(f) for k, f in jobs.items()}
            return {k: f.result() for k, f in futures.items()}

    # -- from the host, over the network ------------------------------------------------------------
    def handshake(self, address: str, port: int, postgres: bool = False) -> Reading:
        return handshake(address, port, postgres)


def _split(out: str) -> dict[str, list[str]]:
    chunks: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith(MARK + " "):
            current = line[len(MARK) + 1:]
            chunks[current] = []
        elif current is not None:
            chunks[current].append(line)
    return chunks


def handshake(address: str, port: int, postgres: bool = False) -> Reading:
    """A TLS handshake with no client certificate, as `openssl s_client` does: the certificate the
    server presents (PEM), and whether it then refuses a client that shows none (client-cert auth).
    `postgres`: PostgreSQL's SSLRequest first, as libpq sends it."""
    what = (f"openssl s_client -connect {address}:{port}" + (" -starttls postgres" if postgres else "")
            + " -showcerts </dev/null")
    source = Source("tls", None, what)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((address, port), timeout=NET_TIMEOUT)
    except OSError as exc:
        return Reading(source, False, error=f"nothing answers on {address}:{port} ({exc.strerror or exc})")
    with sock:
        try:
            if postgres:
                sock.sendall(struct.pack("!ii", 8, 80877103))
                answer = sock.recv(1)
                if answer != b"S":
                    return Reading(source, False, error=f"{address}:{port} does not offer TLS (answered {answer!r})")
            with context.wrap_socket(sock, server_hostname=None) as tls:
                der = tls.getpeercert(binary_form=True)
                value: dict[str, Any] = {"cert": ssl.DER_cert_to_PEM_cert(der) if der else "",
                                         "version": tls.version()}
                value["refuses_without_client_cert"] = _refused_without_cert(tls, postgres)
                return Reading(source, True, value)
        except ssl.SSLError as exc:
            return Reading(source, False, error=f"TLS handshake with {address}:{port} failed: {exc.reason or exc}")
        except OSError as exc:
            if postgres or not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                return Reading(source, False, error=f"TLS handshake with {address}:{port} failed: {exc}")
            return Reading(source, False, error=f"{address}:{port} closed the connection during the TLS handshake")


def _refused_without_cert(tls: ssl.SSLSocket, postgres: bool) -> bool | None:
    """After the handshake: does the server turn away a client that sent no certificate? TLS 1.3
    says so in an alert after the handshake, so one request is sent and the answer read."""
    if postgres:
        return None   # PostgreSQL asks for a certificate in pg_hba (clientcert), not at the handshake
    try:
        tls.settimeout(NET_TIMEOUT)
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: grader\r\nConnection: close\r\n\r\n")
        return not tls.recv(64)
    except OSError:   # ssl.SSLError included: the alert (certificate required, bad certificate)
        return True
