#!/usr/bin/env python3
"""test_model_file.py - the served model file truncated, overwritten or replaced under the daemon
(issue 17 item 6; docs/OPERATIONS.md, "When the model file changes").

- model-mmap = yes (default): after the file is cut to 1 MiB, the daemon
  either keeps serving (the pages it needs are still resident), or exits
  with status 135 after one log line naming the file and SIGBUS, or (when
  its once-a-second look at the file comes before a step reads a lost
  page) exits 1 after the line saying the file was written to; it never dies
  silently (killed by the signal itself);
- model-mmap = no: the weights are a private copy, so truncating the file
  changes nothing: requests still succeed with the same greedy text;
- an overwrite in place of the mapped file: /health fails and the daemon
  drains and exits 1 for a restart, with a log line saying why; with a
  private copy nothing changes; a file replaced by rename keeps serving the
  weights loaded at start and logs that a restart would load the new one.

Each case works on its own copy of the default model in a temporary
directory.
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("model-file")
H.skip_all_without_model(R, ["mmap: truncation is never a silent death"])

SIGBUS_EXIT = 135
BODY = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}


def copy_model():
    d = tempfile.mkdtemp(prefix="llamad-model-file.")
    path = os.path.join(d, "model.gguf")
    shutil.copyfile(H.model_path(), path)
    return d, path


def complete(d):
    """(status, text) of one greedy completion; status None when the
    connection failed (the daemon died under the request)."""
    try:
        st, _, j, _ = H.post_json(d, "/v1/completions", BODY, timeout=60)
    except OSError:
        return None, None
    text = j["choices"][0]["text"] if st == 200 and j else None
    return st, text


def truncate_mapped():
    tmp, path = copy_model()
    try:
        with H.Daemon(model=path) as d:
            st, before = complete(d)
            R.check("mmap: serves before the file changes", st == 200, "status %s" % st)
            os.truncate(path, 1 << 20)
            statuses = [complete(d)[0] for _ in range(3)]
            deadline = time.monotonic() + 10
            while d.alive() and time.monotonic() < deadline and None in statuses:
                time.sleep(0.1)
            alive = d.alive()
            rc = d.stop()
            log = d.log()
            print("  after truncation: %s" % ("still serving" if alive else "exit status %s" % rc))
            if alive:
                R.check("mmap: truncation is never a silent death", all(s == 200 for s in statuses),
                        "alive but answered %s" % statuses)
            else:
                sigbus = rc == SIGBUS_EXIT and "SIGBUS" in log
                watched = rc == 1 and "was written to while llamad reads its weights" in log
                R.check("mmap: truncation is never a silent death",
                        (sigbus or watched) and path in log,
                        "exit status %s, log tail: %s" % (rc, log[-500:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def truncate_private():
    tmp, path = copy_model()
    try:
        with H.Daemon(["--model-mmap", "no"], model=path) as d:
            st, before = complete(d)
            R.check("no-mmap: serves before the file changes", st == 200 and before is not None,
                    "status %s" % st)
            os.truncate(path, 1 << 20)
            results = [complete(d) for _ in range(3)]
            R.check("no-mmap: truncation changes nothing",
                    all(r == (200, before) for r in results) and d.alive(),
                    "before %r, after %r" % (before, results))
            st, _, _ = H.request(d, "GET", "/health")
            R.check("no-mmap: /health stays 200", st == 200, "status %s" % st)
            rc = d.stop()
            R.check("no-mmap: clean exit", rc == 0, "exit status %s" % rc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def overwrite_in_place(private):
    """Bytes of the mapped file rewritten in place (same inode): /health
    fails and the daemon drains and exits 1 for a restart; with a private
    copy, or a file replaced by rename, nothing changes."""
    tmp, path = copy_model()
    args = ["--model-mmap", "no"] if private else []
    name = "no-mmap" if private else "mmap"
    try:
        with H.Daemon(args, model=path) as d:
            st, before = complete(d)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:   # the last MiB: weights
                f.seek(size - (1 << 20))
                f.write(os.urandom(1 << 20))
            deadline = time.monotonic() + 10
            health = None
            while time.monotonic() < deadline and d.alive():
                try:
                    health = H.request(d, "GET", "/health", timeout=5)[0]
                except OSError:
                    health = None
                if health != 200:
                    break
                if private and time.monotonic() > deadline - 7:
                    break   # 3 s with no change is enough: it watches once a second
                time.sleep(0.2)
            if private:
                st2, after = complete(d)
                R.check("%s: an overwrite in place changes nothing" % name,
                        health == 200 and (st2, after) == (200, before),
                        "/health %r, before %r, after %r" % (health, before, (st2, after)))
                R.check("%s: clean exit" % name, d.stop() == 0, d.log()[-500:])
            else:
                try:
                    rc = d.proc.wait(timeout=15)
                except Exception:  # noqa: BLE001
                    rc = None
                log = d.log()
                # with nothing in flight the drain is immediate: the exit may come
                # before a /health poll sees the 503
                R.check("%s: an overwrite in place fails the daemon: exit 1, saying why" % name,
                        rc == 1 and "was written to" in log and "exiting with status 1" in log,
                        "/health %r, exit %r, log tail: %s" % (health, rc, log[-600:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_by_rename():
    tmp, path = copy_model()
    try:
        with H.Daemon(model=path) as d:
            st, before = complete(d)
            new = path + ".new"
            shutil.copyfile(path, new)
            os.rename(new, path)
            deadline = time.monotonic() + 10
            while "was replaced" not in d.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            st2, after = complete(d)
            health = H.request(d, "GET", "/health")[0]
            R.check("mmap: a file replaced by rename keeps serving the loaded weights, and says so",
                    (st2, after) == (200, before) and health == 200 and "was replaced" in d.log(),
                    "before %r, after %r, /health %r" % (before, (st2, after), health))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


truncate_mapped()
truncate_private()
overwrite_in_place(private=False)
overwrite_in_place(private=True)
replace_by_rename()
R.finish()
