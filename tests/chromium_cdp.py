"""Drive a real headless Chromium over the DevTools protocol, for the report's browser test.

Standard library only: a minimal RFC 6455 websocket client (client frames masked, server frames
possibly fragmented) over a raw socket, and a CDP session on one page (flattened target
sessions, so one socket carries everything). Installed browsers: ``.ci/install-chromium.sh``.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

#: Binaries tried in order: the headless shell (Debian's chromium-headless-shell), the browser.
BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of an installed Chromium, or None."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


class WebSocket:
    """Just enough of RFC 6455 for the DevTools endpoint: text frames, ping/pong, close."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium accepts DevTools clients without one
        # (it checks --remote-allow-origins only when an Origin is sent).
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            buf += chunk
        return buf

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._recv_exact(2)
            opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            mask = self._recv_exact(4) if b1 & 0x80 else None
            data = self._recv_exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x1, 0x0):
                parts.append(data)
                if fin:
                    return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """One page of a headless Chromium this object starts; use as a context manager."""

    def __init__(self, *, width: int = 900, height: int = 700, binary: str | None = None,
                 timeout: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("no Chromium; run .ci/install-chromium.sh")
        self.width, self.height, self.timeout = width, height, timeout
        self._id = 0
        self.events: list[dict] = []

    def __enter__(self) -> "Page":
        self._profile = tempfile.mkdtemp(prefix="geosr-chromium-")
        args = [self.binary, "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                "--hide-scrollbars", "--mute-audio", "--disable-extensions",
                f"--window-size={self.width},{self.height}"]
        if Path(self.binary).name != "chromium-headless-shell":
            args.append("--headless=new")
        # The page is one this test suite wrote. Without the sandbox Chromium also runs as root
        # and in containers without user namespaces; a small /dev/shm would crash renderers.
        args += ["--no-sandbox", "--disable-dev-shm-usage"]
        # its own process group: Debian's chromium-headless-shell is a shell script that runs
        # the browser as a child, which terminating the script alone left running
        self.proc = subprocess.Popen(args + ["about:blank"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        try:
            self.ws = WebSocket(self._browser_url(), timeout=self.timeout)
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target,
                                     flatten=True)["sessionId"]
            self.call("Page.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width,
                      height=self.height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _stop(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self._signal(signal.SIGKILL)  # whatever of the group outlived the wrapper
        shutil.rmtree(self._profile, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _browser_url(self) -> str:
        # Chromium writes "<port>\n<path>" here once DevTools listens (port 0: any free port)
        active = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium exited with {self.proc.returncode}: {err}")
            try:
                port, path = active.read_text().split("\n")[:2]
                if port and path:
                    return f"ws://127.0.0.1:{port.strip()}{path.strip()}"
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError("Chromium did not open its DevTools port")

    def call(self, method: str, *, session: bool = False, **params) -> dict:
        """Send one command, return its result (events meanwhile go to ``self.events``)."""
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        """The first event ``method`` (already received or arriving)."""
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))

    def goto(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page (promises awaited)."""
        res = self.call("Runtime.evaluate", session=True, expression=expression,
                        returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, *, buttons: int = 0, **extra) -> None:
        """A trusted mouse event at viewport (x, y); Chromium turns it into pointer events."""
        self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                  button="left" if kind != "mouseMoved" or buttons else "none",
                  buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0, **extra)

    def drag(self, x0: float, y0: float, x1: float, y1: float, *, steps: int = 8) -> None:
        """Press at (x0, y0), move in ``steps`` to (x1, y1), release."""
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, buttons=1)
        for i in range(1, steps + 1):
            self.mouse("mouseMoved", x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps,
                       buttons=1)
        self.mouse("mouseReleased", x1, y1)

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", session=True,
                                          format="png")["data"])
