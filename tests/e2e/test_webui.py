#!/usr/bin/env python3
"""test_webui.py - the chat page on GET /, over HTTP and in a real browser.

Over HTTP (always): the page and its script and style answer 200 with the
Content-Security-Policy written out below (not read from llamad's source),
nosniff and no framing; no asset names another host or holds inline code;
the API gains no CORS header; a foreign Host (DNS rebinding) is refused;
with API keys the assets need none while the API still does; web-ui = no, and web-ui = auto beyond loopback, answer 404.

In a browser (headless Chromium, Debian's `chromium` package, driven over
the Chrome DevTools Protocol with the `websockets` package; SKIP with the
reason when either is missing): type a message and click Send; the streamed
answer in the DOM must equal what the API answers directly to the same
greedy request, and tokens/s must show; Stop on a long answer must end the
request in the server (llamad_requests_cancelled_total, the log's
"client gone"); with an API key the page asks for it, keeps it in
sessionStorage (never in the URL) and chats with it.  The browser must log
no CSP violation.  A screenshot goes to $LLAMAD_BUILDDIR/tests/output/.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("webui")
HTTP_CASES = ["page served with its headers", "script and style served with their headers",
              "assets name no other host and hold no inline code", "API gains no CORS header",
              "with keys the page needs none, the API does", "foreign Host is refused (DNS rebinding)",
              "web-ui = no is 404",
              "web-ui = auto beyond loopback is 404"]
BROWSER_CASES = ["browser: page loads with the model's name", "browser: streamed answer in the DOM",
                 "browser: tokens/s shown", "browser: stop cancels the request in the server",
                 "browser: no CSP violation", "browser: screenshot stored",
                 "browser: asks for the API key", "browser: chats with the key, not in the URL"]
H.skip_all_without_model(R, HTTP_CASES + BROWSER_CASES)

KEY = "sk-llamad-e2e-webui-0123456789"
# What the page must be served with: written out here, independently of server/webui.h.
CSP = {"default-src": "'none'", "script-src": "'self'", "img-src": "'none'", "style-src": "'self'",
       "connect-src": "'self'", "frame-ancestors": "'none'", "base-uri": "'none'"}
OUT_DIR = os.path.join(H.BUILDDIR, "tests", "output")
case = H.case_of(R)


def csp_directives(value):
    out = {}
    for part in (value or "").split(";"):
        words = part.split()
        if words:
            out[words[0]] = " ".join(words[1:])
    return out


# ---------------------------------------------------------------- over HTTP

def http_checks(d, dk):
    @case("page served with its headers")
    def _(name):
        st, h, body = H.request(d, "GET", "/")
        csp = csp_directives(h.get("content-security-policy"))
        bad = {k: csp.get(k) for k, v in CSP.items() if csp.get(k) != v}
        ok = (st == 200 and h.get("content-type", "").startswith("text/html") and not bad and
              h.get("x-content-type-options") == "nosniff" and b"<title>llamad chat</title>" in body)
        R.check(name, ok, "status %d, headers %r, CSP directives differing: %r" % (st, h, bad))

    @case("script and style served with their headers")
    def _(name):
        why = []
        for path, ctype in (("/chat.js", "text/javascript"), ("/chat.css", "text/css")):
            st, h, body = H.request(d, "GET", path)
            if st != 200 or not h.get("content-type", "").startswith(ctype) or \
                    h.get("x-content-type-options") != "nosniff" or len(body) < 200:
                why.append("%s: %d %r (%d bytes)" % (path, st, h, len(body)))
        R.check(name, not why, "\n".join(why))

    @case("assets name no other host and hold no inline code")
    def _(name):
        page = H.request(d, "GET", "/")[2].decode()
        js = H.request(d, "GET", "/chat.js")[2].decode()
        css = H.request(d, "GET", "/chat.css")[2].decode()
        why = []
        for label, text in (("page", page), ("script", js), ("style", css)):
            for m in re.finditer(r"(https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}", text):
                why.append("%s names %s" % (label, m.group(0)))
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
        if not scripts or any("src=" not in attrs or body.strip() for attrs, body in scripts):
            why.append("inline script or none: %r" % scripts)
        if re.search(r"<style|\son[a-z]+=", page):
            why.append("inline style or event handler attribute in the page")
        R.check(name, not why, "\n".join(why))

    @case("API gains no CORS header")
    def _(name):
        st, h, _ = H.request(d, "GET", "/v1/models", headers={"Origin": "https://evil.example"})
        R.check(name, st == 200 and not any(k.startswith("access-control-") for k in h),
                "status %d, headers %r" % (st, h))

    @case("with keys the page needs none, the API does")
    def _(name):
        st_page = H.request(dk, "GET", "/")[0]
        st_js = H.request(dk, "GET", "/chat.js")[0]
        st_api = H.request(dk, "GET", "/v1/models")[0]
        st_key = H.request(dk, "GET", "/v1/models", key=KEY)[0]
        R.check(name, (st_page, st_js, st_api, st_key) == (200, 200, 401, 200),
                "/ %d, /chat.js %d, /v1/models %d without key, %d with" %
                (st_page, st_js, st_api, st_key))


    @case("foreign Host is refused (DNS rebinding)")
    def _(name):
        # a page on evil.example whose name resolves to 127.0.0.1 must not get the chat page
        st = H.request(d, "GET", "/", headers={"Host": "evil.example"})[0]
        R.check(name, st == 403, "GET / with Host: evil.example answered %d" % st)


def off_checks():
    @case("web-ui = no is 404")
    def _(name):
        with H.Daemon(["--web-ui", "no"]) as d:
            got = [H.request(d, "GET", p)[0] for p in ("/", "/chat.js", "/chat.css")]
            models = H.request(d, "GET", "/v1/models")[0]
        R.check(name, got == [404, 404, 404] and models == 200, "%r, /v1/models %d" % (got, models))

    @case("web-ui = auto beyond loopback is 404")
    def _(name):
        # the wildcard address is not loopback; the key makes listening on it allowed
        with H.Daemon(["--host", "0.0.0.0", "--api-key", KEY]) as d:
            st = H.request(d, "GET", "/")[0]
        R.check(name, st == 404, "GET / answered %d" % st)


# ---------------------------------------------------------------- the browser

class Cdp:
    """A Chrome DevTools Protocol session on one page target, over an open
    websocket (synchronous)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = []

    def call(self, method, timeout=15, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def js(self, expr):
        """The value of a JavaScript expression on the page (awaited)."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expr, r["exceptionDetails"].get("text")))
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js(expr):
                return
            time.sleep(0.05)
        raise TimeoutError("%s: not within %.0f s" % (what, timeout))

    def click(self, elem_id):
        """A real mouse click at the middle of the element."""
        box = self.js("(() => { const r = document.getElementById(%s).getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(elem_id))
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def type_into(self, elem_id, text, replace=True):
        self.js("(() => { const e = document.getElementById(%s); e.focus();%s })()"
                % (json.dumps(elem_id), " e.select();" if replace else ""))
        self.call("Input.insertText", text=text)

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && !!document.getElementById('send')", 15,
                  "the page loads")

    def csp_violations(self):
        out = []
        for ev in self.events:
            if ev["method"] == "Log.entryAdded":
                text = ev["params"]["entry"].get("text", "")
            elif ev["method"] == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", "")) for a in ev["params"].get("args", []))
            else:
                continue
            if "Content Security Policy" in text or "Refused to" in text:
                out.append(text)
        return out



class Browser:
    """Headless Chromium with a DevTools port and a throw-away profile."""

    def __init__(self, exe):
        self.profile = tempfile.mkdtemp(prefix="llamad-chromium.")
        args = [exe, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
                "--window-size=1000,900", "about:blank"]
        # no sandbox: it refuses to run as root, and needs user namespaces that containers
        # often lack; the browser loads only llamad's own page here
        args.insert(1, "--no-sandbox")
        self.log_path = os.path.join(self.profile, "chromium.log")
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        # Chromium writes the port it chose (and the browser target's path) here
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = self.log()[-1500:]
                self.close()
                raise RuntimeError("chromium did not start:\n" + why)
            time.sleep(0.1)
        time.sleep(0.1)
        with open(port_file) as f:
            self.port = int(f.read().split()[0])

    def page_ws(self):
        import urllib.request
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return pages[0]["webSocketDebuggerUrl"]

    def log(self):
        return H.read_log(self.log_path)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def chromium_exe():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def assistant_text(cdp):
    return cdp.js("(() => { const m = document.querySelectorAll('.msg.assistant');"
                  " return m.length ? m[m.length - 1].textContent : null; })()")


def send_and_wait(cdp, text, timeout):
    cdp.type_into("input", text)
    cdp.click("send")
    cdp.wait("document.querySelectorAll('.msg.assistant').length > 0 &&"
             " !document.getElementById('send').disabled", timeout, "the answer completes")


def browser_checks(b, d, dk):
    # proxy=None: the DevTools port is local, whatever http_proxy says
    with b.ws_sync.connect(b.page_ws(), max_size=None, open_timeout=10, proxy=None) as ws:
        cdp = Cdp(ws)
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call("Log.enable")
        chat_checks(cdp, d)
        key_checks(cdp, dk)
        violations = cdp.csp_violations()
        R.check("browser: no CSP violation", not violations, "\n".join(violations[:5]))


def chat_checks(cdp, d):
    @case("browser: page loads with the model's name")
    def _(name):
        cdp.goto(d.base + "/")
        want = H.request(d, "GET", "/v1/models")
        want_id = json.loads(want[2])["data"][0]["id"]
        cdp.wait("document.getElementById('model').textContent === %s" % json.dumps(want_id), 10,
                 "the model's name shows")
        R.ok(name)

    question = "What is the capital of France?"
    system = "You are a terse geography assistant."
    max_tokens = 24

    @case("browser: streamed answer in the DOM")
    def _(name):
        cdp.type_into("system", system)
        cdp.type_into("temperature", "0")
        cdp.type_into("max_tokens", str(max_tokens))
        send_and_wait(cdp, question, 30)
        got = assistant_text(cdp)
        # the same greedy request straight to the API, without streaming: the reference
        st, _, j, raw = H.post_json(d, "/v1/chat/completions", {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "temperature": 0, "max_tokens": max_tokens})
        want = j["choices"][0]["message"]["content"] if st == 200 else None
        err = cdp.js("document.getElementById('error').textContent")
        R.check(name, got and got == want, "DOM %r, API %r (status %d), page error %r" %
                (got, want, st, err))

    @case("browser: tokens/s shown")
    def _(name):
        stats = cdp.js("document.getElementById('stats').textContent")
        m = re.match(r"(\d+) tokens, ([\d.]+) tokens/s", stats or "")
        R.check(name, m and 0 < int(m.group(1)) <= max_tokens and float(m.group(2)) > 0,
                "stats %r" % stats)

    @case("browser: screenshot stored")
    def _(name):
        os.makedirs(OUT_DIR, exist_ok=True)
        shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
        path = os.path.join(OUT_DIR, "webui-chat.png")
        with open(path, "wb") as f:
            f.write(shot)
        print("screenshot: " + path, flush=True)
        R.check(name, shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000,
                "%d bytes, starting %r" % (len(shot), shot[:8]))

    @case("browser: stop cancels the request in the server")
    def _(name):
        before = H.metric(H.metrics(d), "llamad_requests_cancelled_total") or 0
        cdp.type_into("temperature", "0.8")
        cdp.type_into("max_tokens", "2000")
        cdp.type_into("input", "Write a very long story about a dragon and a lighthouse keeper.")
        cdp.click("send")
        n_before = cdp.js("document.querySelectorAll('.msg.assistant').length")
        cdp.wait("document.querySelectorAll('.msg.assistant').length > 0 &&"
                 " document.querySelectorAll('.msg.assistant')[%d - 1].textContent.length > 0 &&"
                 " !document.getElementById('stop').disabled" % (n_before,), 20,
                 "the long answer starts")
        cdp.click("stop")
        t_stop = time.monotonic()
        cdp.wait("!document.getElementById('send').disabled", 10, "the page leaves its busy state")
        stopped = cdp.js("document.querySelectorAll('.msg.assistant.stopped').length")
        deadline = time.monotonic() + 10
        after = before
        while time.monotonic() < deadline:
            m = H.metrics(d)
            after = H.metric(m, "llamad_requests_cancelled_total") or 0
            if after > before and not H.metric(m, "llamad_requests_running"):
                print("stop: the server counted the cancel %.2f s after the click"
                      % (time.monotonic() - t_stop), flush=True)
                break
            time.sleep(0.1)
        gone = "(client gone)" in d.log()
        R.check(name, stopped == 1 and after == before + 1 and gone,
                "marked stopped %r, cancelled_total %r -> %r, log says client gone: %r" %
                (stopped, before, after, gone))


def key_checks(cdp, dk):
    @case("browser: asks for the API key")
    def _(name):
        cdp.goto(dk.base + "/")
        cdp.wait("!document.getElementById('keybox').hidden", 10, "the key prompt shows")
        cdp.type_into("key", "sk-wrong-key")
        cdp.click("keysave")
        cdp.wait("/refused/.test(document.getElementById('error').textContent)", 10,
                 "a wrong key is refused")
        cdp.type_into("key", KEY)
        cdp.click("keysave")
        cdp.wait("document.getElementById('keybox').hidden", 10, "the key is taken")
        R.ok(name)

    @case("browser: chats with the key, not in the URL")
    def _(name):
        cdp.type_into("max_tokens", "8")
        send_and_wait(cdp, "Say hello.", 30)
        got = assistant_text(cdp)
        stored = cdp.js("sessionStorage.getItem('llamad-api-key')")
        local = cdp.js("localStorage.length")
        href = cdp.js("location.href")
        R.check(name, got and stored == KEY and local == 0 and KEY not in href and
                KEY not in dk.log(),
                "answer %r, sessionStorage %r, localStorage items %r, URL %r" %
                (got, stored, local, href))


def main():
    t0 = time.monotonic()
    d = H.start_or_finish(R, H.Daemon())
    dk = None
    try:
        dk = H.start_or_finish(R, H.Daemon(["--api-key", KEY]))
        http_checks(d, dk)
        exe = chromium_exe()
        try:
            import websockets.sync.client as ws_sync
        except ImportError:
            ws_sync = None
        if exe is None or ws_sync is None:
            why = ("no chromium on PATH (Debian's chromium package; scripts/setup installs it)"
                   if exe is None else "the websockets package is not installed for " + sys.executable)
            for c in BROWSER_CASES:
                R.skip(c, why)
        else:
            try:
                b = Browser(exe)
            except (OSError, RuntimeError) as ex:
                for c in BROWSER_CASES:
                    R.fail(c, "chromium did not start: %s" % ex)
                b = None
            if b is not None:
                b.ws_sync = ws_sync
                try:
                    browser_checks(b, d, dk)
                except Exception as ex:  # noqa: BLE001 - the DevTools session broke: a FAIL line
                    R.fail("browser: DevTools session", "%s: %s\n%s" %
                           (type(ex).__name__, ex, b.log()[-1000:]))
                finally:
                    b.close()
    finally:
        if dk is not None:
            dk.stop()
        d.stop()
    off_checks()
    print("webui: %.1f s" % (time.monotonic() - t0), flush=True)
    R.finish()


if __name__ == "__main__":
    main()
