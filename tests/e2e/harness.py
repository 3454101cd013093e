#!/usr/bin/env python3
"""harness.py - shared helpers for llamad's Python end-to-end tests.

Starts llamad on a free loopback port (Daemon, a context manager that
always stops it, with SIGTERM then SIGKILL, also from atexit), speaks raw
HTTP to it (http.client for well-formed requests, plain sockets for
malformed ones), and prints the "PASS: / FAIL: / SKIP: name" lines that
tests/run-suite.sh counts.

Environment: LLAMAD_BIN (default ./llamad, then the build tree's llamad),
LLAMAD_TEST_MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf under the
source tree), LLAMAD_SRCDIR, LLAMAD_BUILDDIR (set by run-suite.sh).
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("LLAMAD_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("LLAMAD_BUILDDIR") or SRCDIR
DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def llamad_bin():
    """The daemon binary: $LLAMAD_BIN, else ./llamad, else the build tree's."""
    b = os.environ.get("LLAMAD_BIN")
    if b:
        return os.path.abspath(b)
    for cand in ("./llamad", os.path.join(BUILDDIR, "llamad")):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return os.path.abspath("./llamad")


def model_path():
    """The test model: $LLAMAD_TEST_MODEL, else the default under the source tree."""
    m = os.environ.get("LLAMAD_TEST_MODEL")
    if m:
        return os.path.abspath(m)
    if os.path.exists(DEFAULT_MODEL):
        return os.path.abspath(DEFAULT_MODEL)
    return os.path.join(SRCDIR, DEFAULT_MODEL)


# ---------------------------------------------------------------- reporting

class Report:
    """Counts cases and prints one PASS/FAIL/SKIP line for each."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.passed = self.failed = self.skipped = 0

    def _name(self, name):
        return (self.prefix + ": " + name) if self.prefix else name

    def ok(self, name):
        self.passed += 1
        print("PASS: " + self._name(name), flush=True)

    def fail(self, name, why=""):
        self.failed += 1
        print("FAIL: " + self._name(name), flush=True)
        if why:
            for line in str(why).splitlines()[:12]:
                print("  " + line[:400], flush=True)

    def skip(self, name, why=""):
        self.skipped += 1
        print("SKIP: " + self._name(name) + (" (" + why + ")" if why else ""), flush=True)

    def check(self, name, cond, why=""):
        """PASS when cond is true, else FAIL with why.  Returns cond."""
        if cond:
            self.ok(name)
        else:
            self.fail(name, why)
        return bool(cond)

    def attempt(self, name, fn):
        """Run fn() -> (ok, why) as check(name, ok, why); an exception is a FAIL
        line with its type and the line it came from."""
        try:
            ok, why = fn()
            self.check(name, ok, why)
        except Exception as ex:  # noqa: BLE001 - any failure is a FAIL line
            tb = traceback.extract_tb(ex.__traceback__)
            self.fail(name, "%s: %s (line %d)" % (type(ex).__name__, str(ex)[:600],
                                                  tb[-1].lineno if tb else 0))

    def finish(self):
        """Exit the test program: status 1 when anything failed."""
        sys.stdout.flush()
        sys.exit(1 if self.failed else 0)


def skip_all_without_model(report, names):
    """When the model file is missing, print SKIP for each name and exit 0;
    when the daemon binary is missing, print FAIL and exit 1."""
    mp = model_path()
    if not os.path.exists(mp):
        for n in names:
            report.skip(n, "no model at " + mp)
        sys.exit(0)
    if not os.path.isfile(llamad_bin()):
        report.fail(names[0], "no llamad at " + llamad_bin())
        report.finish()


def have(module):
    """Whether `module` can be imported."""
    import importlib
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def import_or_skip_all(report, names, module):
    """The module named `module`, imported; when it is not installed, print
    SKIP for each name (saying which package and python) and exit 0."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        for n in names:
            report.skip(n, "the %s package is not installed for %s" % (module, sys.executable))
        sys.exit(0)


# ---------------------------------------------------------------- the daemon

_help_cache = None


def help_text():
    """llamad --help, cached (used to find which options this build has)."""
    global _help_cache
    if _help_cache is None:
        try:
            _help_cache = subprocess.run([llamad_bin(), "--help"], capture_output=True,
                                         text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            _help_cache = ""
    return _help_cache


def has_flag(flag):
    """True when llamad --help lists `flag` (e.g. "--drain-timeout")."""
    return re.search(r"(^|\s)" + re.escape(flag) + r"(\s|=|$)", help_text(), re.M) is not None


def auth_args(key, tmpdir):
    """The options that make llamad require Bearer `key`, or None when this
    build has no such option.  A key file holds one key per line."""
    for flag in ("--api-key-file", "--api-keys-file", "--api-keys", "--keys-file", "--key-file"):
        if has_flag(flag):
            path = os.path.join(tmpdir, "keys")
            with open(path, "w") as f:
                f.write(key + "\n")
            os.chmod(path, 0o600)
            return [flag, path]
    if has_flag("--api-key"):
        return ["--api-key", key]
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_live = []


_tmpdirs = []


def _kill_leftovers():
    for d in list(_live):
        d.stop(timeout=5)
    for t in _tmpdirs:
        shutil.rmtree(t, ignore_errors=True)


atexit.register(_kill_leftovers)


def _on_signal(signum, frame):
    # a test killed by the runner still stops its daemons (atexit runs on SystemExit)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def read_log(path):
    """A log file's text (undecodable bytes replaced), or "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class DaemonError(Exception):
    pass


class Daemon:
    """A llamad process on a free loopback port.

    with Daemon(["--max-seqs", "8"]) as d:  d.port, d.pid, d.log()
    The log (stdout and stderr) goes to a temporary file; stop() sends
    SIGTERM, waits `timeout` seconds, then SIGKILLs, and returns the exit
    status (negative: killed by that signal)."""

    def __init__(self, extra_args=(), model=None, ready_timeout=120, env=None):
        self.extra_args = list(extra_args)
        self.model = model or model_path()
        self.ready_timeout = ready_timeout
        self.env = env
        self.proc = None
        self.port = None
        self.tmp = tempfile.mkdtemp(prefix="llamad-e2e.")
        _tmpdirs.append(self.tmp)
        self.log_path = os.path.join(self.tmp, "llamad.log")
        self.returncode = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.port = free_port()
        args = [llamad_bin(), "--model", self.model, "--host", "127.0.0.1",
                "--port", str(self.port)] + self.extra_args
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env)
        _live.append(self)
        deadline = time.monotonic() + self.ready_timeout
        ready_path = "/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError("llamad exited with status %d before it was ready:\n%s"
                                  % (self.proc.returncode, self.log()[-3000:]))
            try:
                st, _, _ = request(self, "GET", ready_path, timeout=2)
                if st == 200:
                    return self
                if st == 404 and ready_path != "/health":
                    ready_path = "/health"   # a build without /health/ready
            except OSError:
                pass
            time.sleep(0.1)
        self.stop(timeout=5)
        raise DaemonError("llamad was not ready within %d s:\n%s"
                          % (self.ready_timeout, self.log()[-3000:]))

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """SIGTERM (or `sig`), then SIGKILL after `timeout` s; returns the exit status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc = None
        self._logf.close()
        if self in _live:
            _live.remove(self)
        return self.returncode

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return read_log(self.log_path)

    def proc_status(self, field):
        """A field of /proc/PID/status in kB (e.g. "RssAnon"), or None."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, TypeError, ValueError):
            return None
        return None

    def fd_count(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.pid))
        except (OSError, TypeError):
            return None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def start_or_finish(report, d):
    """Start Daemon d; when it does not come up, FAIL "daemon starts" with
    its log and exit the test program."""
    try:
        d.start()
    except DaemonError as ex:
        report.fail("daemon starts", str(ex))
        report.finish()
    return d


# ---------------------------------------------------------------- HTTP

def request(d, method, path, body=None, headers=None, timeout=60, key=None):
    """One HTTP request with http.client.  body: bytes, str, or an object
    sent as JSON.  Returns (status, {lowercased header: value}, body bytes)."""
    hdrs = {}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    elif isinstance(body, str):
        body = body.encode()
        hdrs["Content-Type"] = "application/json"
    if key is not None:
        hdrs["Authorization"] = "Bearer " + key
    if headers:
        hdrs.update(headers)
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def post_json(d, path, obj, key=None, timeout=60):
    """POST a JSON object; returns (status, headers, parsed JSON or None, raw body)."""
    st, h, b = request(d, "POST", path, obj, key=key, timeout=timeout)
    try:
        j = json.loads(b)
    except ValueError:
        j = None
    return st, h, j, b


def raw(d, data, timeout=30, read_limit=1 << 20, shut_write=False, src=None):
    """Send raw bytes on a fresh socket (from address `src` when given),
    read the reply until close.  Returns (status or None, {header: value},
    body bytes).  A reset or a close before any reply gives status None."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout,
                                 source_address=(src, 0) if src else None)
    try:
        try:
            s.sendall(data)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        try:
            while len(buf) < read_limit:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if _complete(buf):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    return parse_response(buf)


def _complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(body) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        return body.endswith(b"0\r\n\r\n")
    return False


def parse_response(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0]) if lines and lines[0] else None
    if not m:
        return None, {}, buf
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hdrs[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if "chunked" in hdrs.get("transfer-encoding", ""):
        body = dechunk(body)
    return int(m.group(1)), hdrs, body


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            n = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def error_shape(body):
    """None when body is the OpenAI error object, else a reason string."""
    try:
        j = json.loads(body)
    except (ValueError, TypeError):
        return "body is not JSON: %r" % body[:200]
    if not isinstance(j, dict) or not isinstance(j.get("error"), dict):
        return "no error object: %r" % body[:200]
    e = j["error"]
    for k in ("message", "type", "param", "code"):
        if k not in e:
            return "error lacks %r: %r" % (k, body[:200])
    if not isinstance(e["message"], str) or not e["message"]:
        return "error.message is not a non-empty string"
    if not isinstance(e["type"], str) or not e["type"]:
        return "error.type is not a non-empty string"
    if e["param"] is not None and not isinstance(e["param"], str):
        return "error.param is neither null nor a string"
    if e["code"] is not None and not isinstance(e["code"], (str, int)):
        return "error.code is neither null nor a string"
    return None


def sse_parse(body):
    """Check SSE framing of a whole stream body (bytes).  Returns
    (list of data payload strings, problem or None).  Events are blank-line
    separated; comment lines (":") are allowed; every event must carry
    exactly one `data: ` line; the last one must be [DONE]."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    datas = []
    if not text.endswith("\n\n"):
        return datas, "stream does not end with a blank line: %r" % text[-80:]
    for ev in text.split("\n\n")[:-1]:
        lines = [ln for ln in ev.split("\n") if not ln.startswith(":")]
        if not lines:
            continue        # a comment-only keep-alive
        if len(lines) != 1 or not lines[0].startswith("data: "):
            return datas, "event is not one `data: ` line: %r" % ev[:200]
        datas.append(lines[0][6:])
    if not datas or datas[-1] != "[DONE]":
        return datas, "stream does not end with data: [DONE]"
    if "[DONE]" in datas[:-1]:
        return datas, "[DONE] before the end"
    return datas, None


def metrics(d, key=None):
    """GET /metrics parsed to {name or name{labels}: float}; {} when not 200."""
    try:
        st, _, b = request(d, "GET", "/metrics", key=key, timeout=10)
    except OSError:
        return {}
    if st != 200:
        return {}
    out = {}
    for line in b.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) != 2:
            continue
        name, val = parts
        if re.match(r"^-?\d", val.split()[0]) is None and val not in ("NaN", "+Inf", "-Inf"):
            # "name value timestamp": take the value
            p = line.split()
            if len(p) >= 2:
                name, val = p[0], p[1]
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


def metric(m, name):
    """The value of `name` (summed over its label sets), or None when absent."""
    vals = [v for k, v in m.items() if k == name or k.startswith(name + "{")]
    return sum(vals) if vals else None


def greedy_cli(prompt, n, extra=()):
    """llamad --prompt PROMPT -n N (greedy): the generated text (its stdout
    less the one newline it prints after the text)."""
    r = subprocess.run([llamad_bin(), "--model", model_path(), "--prompt", prompt, "-n", str(n),
                        "--temperature", "0"] + list(extra),
                       capture_output=True, timeout=120)
    if r.returncode != 0:
        raise DaemonError("llamad --prompt exited %d: %s" % (r.returncode, r.stderr[-500:]))
    out = r.stdout.decode("utf-8", "replace")
    return out[:-1] if out.endswith("\n") else out


def http_request_bytes(method, path, body=b"", key=None, ctype="application/json"):
    """A whole HTTP/1.1 request (Connection: close) as bytes."""
    h = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
    if key:
        h += "Authorization: Bearer %s\r\n" % key
    if body:
        h += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body))
    return h.encode() + b"\r\n" + (body or b"")


def stream_post(d, path, obj, key=None, abort=None, abort_events=1, abort_delay=0.0,
                timeout=120):
    """POST obj as JSON on a raw socket and read the reply until close.

    abort: None (read it all), "queued" (close abort_delay s after sending),
    "early" (close once the status line and headers are in), or "mid" (close
    after abort_events `data: ` events).  Returns a dict: status, headers,
    body (de-chunked), raw, aborted (True when we closed first), error."""
    out = {"status": None, "headers": {}, "body": b"", "raw": b"", "aborted": False,
           "error": None}
    body = json.dumps(obj).encode()
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    except OSError as ex:
        out["error"] = "connect: %s" % ex
        return out
    buf = b""
    try:
        s.sendall(http_request_bytes("POST", path, body, key))
        if abort == "queued":
            if abort_delay:
                time.sleep(abort_delay)
            out["aborted"] = True
            return out
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if abort == "early" and b"\r\n\r\n" in buf:
                out["aborted"] = True
                break
            if abort == "mid" and buf.count(b"data: ") >= abort_events:
                out["aborted"] = True
                break
    except (OSError, socket.timeout) as ex:
        out["error"] = "%s: %s" % (type(ex).__name__, ex)
    finally:
        try:
            # RST rather than FIN where we abort, as a killed client would
            if out["aborted"]:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()
    out["raw"] = buf
    st, hd, bd = parse_response(buf)
    out["status"], out["headers"], out["body"] = st, hd, bd
    return out


def check_stream(res, chat=False):
    """None when a finished stream reply is a complete, well-formed SSE
    stream of JSON chunks ending in [DONE]; else the problem."""
    if res["error"]:
        return res["error"]
    if res["status"] != 200:
        return "status %r: %r" % (res["status"], res["body"][:200])
    if not res["headers"].get("content-type", "").startswith("text/event-stream"):
        return "content-type %r" % res["headers"].get("content-type")
    datas, problem = sse_parse(res["body"])
    if problem:
        return problem + ": %r" % res["body"][-200:]
    for x in datas[:-1]:
        try:
            j = json.loads(x)
        except ValueError:
            return "data line is not JSON: %r" % x[:200]
        if "error" in j:
            return "error event: %r" % x[:200]
    finish = [c.get("finish_reason") for x in datas[:-1] for c in json.loads(x).get("choices", [])
              if c.get("finish_reason")]
    if len(finish) != 1:
        return "%d chunks carry a finish_reason" % len(finish)
    return None


def case_of(report):
    """A decorator for `report`: @case("name") runs the function at once with
    its name, an exception in it becoming a FAIL line with its line number."""
    def case(name):
        def wrap(fn):
            try:
                fn(name)
            except Exception as ex:  # noqa: BLE001 - any failure is a FAIL line
                tb = traceback.extract_tb(ex.__traceback__)
                where = "line %d" % tb[-1].lineno if tb else "?"
                report.fail(name, "%s: %s (%s)" % (type(ex).__name__, ex, where))
            return fn
        return wrap
    return case
