"""A small driver of a real headless Chromium over the Chrome DevTools Protocol, for browser tests of the UI.

``with Chromium() as page: page.goto(url); page.evaluate("document.title")``. Chromium (Debian's ``chromium``
package; ``./dev test`` installs it) runs in its own process group with a throw-away profile, which the exit
kills whole and deletes. One page target, one websocket (``websocket-client``); every call has a bounded timeout.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

from tests.helpers.process import StartedInWith, stop_process_groups

__all__ = ["BrowserError", "Chromium", "JsError", "find_chromium"]

INSTALL_HINT = "apt-get install -y --no-install-recommends chromium"


class BrowserError(RuntimeError):
    """Chromium did not start, a DevTools call failed, or a wait ran out."""


class JsError(BrowserError):
    """A script evaluated in the page threw; the message is the page's own."""


def find_chromium() -> str:
    """The ``chromium`` executable on PATH; a clear error naming the Debian package when there is none."""
    binary = shutil.which("chromium")
    if binary is None:
        raise BrowserError(
            f"no `chromium` on PATH: install Debian's package (`{INSTALL_HINT}`) or run ./dev test"
        )
    return binary


class Chromium(StartedInWith):
    """One headless Chromium and its first page, driven through DevTools; ``with`` starts and stops it."""

    def __init__(self, *, timeout: float = 30.0, window: tuple[int, int] = (1400, 900)) -> None:
        self.timeout = timeout
        self.window = window
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile: Path | None = None
        self.port = 0
        self._ws: websocket.WebSocket | None = None
        self._log: Any = None
        self._id = 0
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self.errors: collections.deque[str] = collections.deque(maxlen=100)  # page exceptions, console errors
        self.dialogs: list[str] = []  # alert/confirm/prompt texts; each is accepted (one blocks the page)
        self.pgid = 0  # kept after stop, for survivors()
        self.profile_name = ""

    # -------------------------------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> None:
        binary = find_chromium()
        self.profile = Path(tempfile.mkdtemp(prefix="mlops-chromium-"))
        width, height = self.window
        self._log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "--no-first-run",
             "--no-default-browser-check", "--disable-breakpad", "--disable-extensions", "--disable-background-networking",
             "--disable-dev-shm-usage", "--password-store=basic", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, env=self._env(), start_new_session=True,
        )  # fmt: skip
        self.pgid, self.profile_name = self.proc.pid, str(self.profile)
        self.port = self._devtools_port(timeout)
        target = self._page_target(timeout)
        self._ws = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.setLifecycleEventsEnabled", {"enabled": True})

    def _env(self) -> dict[str, str]:
        """
        Chromium's crash handler (crashpad) leaves the process group (it daemonises); with its config folder in
        the profile its database, and so its command line, names the profile, which is how :meth:`stop` finds it.
        """
        assert self.profile is not None
        env = dict(os.environ)
        env.update(
            {"XDG_CONFIG_HOME": str(self.profile / "config"), "XDG_CACHE_HOME": str(self.profile / "cache")}
        )
        return env

    def survivors(self) -> list[int]:
        """
        Live processes of this browser (zombies aside): in its process group, or naming its profile on their
        command line. Empty after :meth:`stop`.
        """
        if not self.pgid:
            return []
        needle = self.profile_name.encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so split after ")"
                state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
                if state != "Z" and (int(pgrp) == self.pgid or needle in (entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue  # gone meanwhile
        return found

    def stop(self) -> None:
        """
        Ask the browser to close (it reaps its own children), then end its whole process group: SIGTERM, a
        grace period, SIGKILL. Nothing of it outlives this call, and the profile folder is deleted.
        """
        if self._ws is not None:
            try:
                self._ws.send(json.dumps({"id": self._id + 1, "method": "Browser.close", "params": {}}))
                if self.proc is not None:
                    self.proc.wait(timeout=5)
            except (OSError, websocket.WebSocketException, subprocess.TimeoutExpired):
                pass  # the process group is killed next anyway
            try:
                self._ws.close()
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None
        if self.proc is not None:
            stop_process_groups(self.proc, grace=5.0)
            self.proc = None
        if self.pgid:
            deadline = time.monotonic() + 5
            while (strays := self.survivors()) and time.monotonic() < deadline:
                time.sleep(0.1)  # the crash handler exits on its own once the browser is gone
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def _log_tail(self) -> str:
        try:
            assert self.profile is not None
            return (self.profile / "chromium.log").read_text(errors="replace")[-3000:]
        except (OSError, AssertionError):
            return ""

    def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it chose (``--remote-debugging-port=0``) to the profile's DevToolsActivePort."""
        assert self.proc is not None and self.profile is not None
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                lines = marker.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 2 and lines[0].strip().isdigit():  # port, then the browser's path: complete
                return int(lines[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium wrote no {marker} within {timeout:.0f}s:\n{self._log_tail()}")

    def _page_target(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as response:
                    targets = json.loads(response.read())
                pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                if pages:
                    return dict(pages[0])
                last = targets
            except (OSError, ValueError) as err:
                last = err
            time.sleep(0.2)
        raise BrowserError(
            f"chromium on port {self.port} listed no page target within {timeout:.0f}s: {last}"
        )

    # -------------------------------------------------------------------------------------------- protocol
    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """One DevTools command; returns its ``result``. Events that arrive meanwhile are queued, not lost."""
        if self._ws is None:
            raise BrowserError(f"{method}: the browser is not running")
        self._id += 1
        call_id = self._id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline, f"the answer to {method}")
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(
                        f"{method} failed: {message['error'].get('message')} ({message['error']})"
                    )
                return message.get("result", {})

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        assert self._ws is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"no {what} within the timeout")
        self._ws.settimeout(remaining)
        try:
            message: dict[str, Any] = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError(f"no {what} within the timeout") from None
        if "method" in message:
            self._events.append(message)
            self._note_error(message)
            if message["method"] == "Page.javascriptDialogOpening":
                self.dialogs.append(str(message["params"].get("message", "")))
                self._id += 1  # its answer arrives later and is skipped like an event
                self._ws.send(
                    json.dumps(
                        {"id": self._id, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}
                    )
                )
        return message

    def _note_error(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )

    def wait_event(
        self, method: str, *, timeout: float | None = None, where: dict[str, Any] | None = None
    ) -> Any:
        """The params of the first queued or arriving ``method`` event whose params include ``where``."""
        deadline = time.monotonic() + (timeout or self.timeout)

        def matches(event: dict[str, Any]) -> bool:
            params = event.get("params", {})
            return event["method"] == method and all(params.get(k) == v for k, v in (where or {}).items())

        for event in list(self._events):
            if matches(event):
                self._events.remove(event)
                return event.get("params", {})
        while True:
            message = self._receive(deadline, f"{method} event")
            if "method" in message and matches(message):
                self._events.remove(message)
                return message.get("params", {})

    # -------------------------------------------------------------------------------------------- the page
    def goto(self, url: str, *, timeout: float | None = None) -> None:
        """Navigate the page and wait for its ``load`` event (redirects followed)."""
        self._events.clear()
        result = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        if result.get("loaderId"):  # same-document navigations (a hash change) fire no load event
            self.wait_event("Page.loadEventFired", timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """The JSON value of ``expression`` in the page (promises awaited); :class:`JsError` when it throws."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            message = details.get("exception", {}).get("description") or details.get("text", "exception")
            raise JsError(f"{message.splitlines()[0] if message else message} (in: {expression[:200]})")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, *, timeout: float | None = None, interval: float = 0.2) -> Any:
        """
        Poll the JS expression ``condition`` until it is truthy and return its value. Errors while polling (the
        page navigating away mid-call, an element not there yet) count as not yet.
        """
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        last: object = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(condition, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                if value:
                    return value
                last = value
            except BrowserError as err:
                last = err
            time.sleep(interval)
        url = self._safe_url()
        raise BrowserError(f"not true after {limit:.0f}s at {url}: {condition} (last: {last!r})")

    def _safe_url(self) -> str:
        try:
            return str(self.evaluate("location.href", timeout=5))
        except BrowserError:
            return "?"

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def click(self, selector: str) -> None:
        """Click the first element matching ``selector`` (as a user would: React sees a bubbling click)."""
        self.evaluate(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              if (!el) throw new Error("no element matches " + {json.dumps(selector)});
              el.scrollIntoView({{block: "center"}});
              el.click();
              return true;
            }})()"""
        )

    def type(self, selector: str, text: str) -> None:
        """
        Set the value of an input or textarea through the element's native value setter and dispatch ``input``
        and ``change``, so React's controlled inputs see the change as they see typing.
        """
        self.evaluate(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              if (!el) throw new Error("no element matches " + {json.dumps(selector)});
              const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype
                                                              : HTMLInputElement.prototype;
              el.focus();
              Object.getOwnPropertyDescriptor(proto, "value").set.call(el, {json.dumps(text)});
              el.dispatchEvent(new Event("input", {{bubbles: true}}));
              el.dispatchEvent(new Event("change", {{bubbles: true}}));
              return el.value;
            }})()"""
        )

    def frame_eval(self, iframe_selector: str, expression: str, *, timeout: float | None = None) -> Any:
        """
        Evaluate ``expression`` against a same-origin iframe of the page, with ``doc`` and ``win`` bound to its
        document and window. It runs in the outer page: the frame's own CSP may forbid ``eval`` there.
        """
        return self.evaluate(
            f"""(() => {{
              const frame = document.querySelector({json.dumps(iframe_selector)});
              if (!frame) throw new Error("no iframe matches " + {json.dumps(iframe_selector)});
              if (!frame.contentWindow || !frame.contentDocument)
                throw new Error("iframe " + {json.dumps(iframe_selector)} + " is not loaded or not same-origin");
              return ((doc, win) => ({expression}))(frame.contentDocument, frame.contentWindow);
            }})()""",
            timeout=timeout,
        )

    def cookies(self) -> dict[str, str]:
        """The cookies of the current page's URL, by name."""
        return {c["name"]: c["value"] for c in self.send("Network.getCookies").get("cookies", [])}

    def clear_cookies(self) -> None:
        self.send("Network.clearBrowserCookies")

    def navigation_timing(self) -> dict[str, float]:
        """The current document's navigation timing (ms from the start of navigation)."""
        value = self.evaluate(
            """(() => {
              const nav = performance.getEntriesByType("navigation")[0];
              if (!nav) return null;
              return {duration: nav.duration, response_end: nav.responseEnd,
                      dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                      transfer_size: nav.transferSize};
            })()"""
        )
        if not value:
            raise BrowserError(f"no navigation timing entry at {self._safe_url()}")
        return {key: float(v) for key, v in value.items()}

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport (or the whole page) at ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
