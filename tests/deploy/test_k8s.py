#!/usr/bin/env python3
"""test_k8s.py - deploy/k8s renders and validates, offline.

For each overlay (gpu, cpu): `kubectl kustomize` renders it, and every
rendered object validates (strict: no unknown fields) against the
Kubernetes OpenAPI schemas of the kubernetes-validate package.  The
Prometheus Operator's PodMonitor is a custom resource the package has no
schema for: it is reported as a SKIP by name, and its few fields that must
match the Deployment are checked here instead.  Then what docs/DEPLOY.md
promises about the objects, each against an independent source: the stop
budget (grace period > preStop + drain-timeout), the probe paths (routes
llamad serves, server/routes.c), the HPA metric (a gauge llamad exports,
server/metrics.c), non-root and a read-only root, the keys as a file from
a Secret, the GPU request only in the gpu overlay.

Needs kubectl (any version whose kustomize reads the overlays: Debian 12's
kubernetes-client 1.20 and later; $KUBECTL to name one) and the
kubernetes-validate package; SKIPs naming what is missing.
"""

import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import harness as H  # noqa: E402

R = H.Report("k8s")
OVERLAYS = ("gpu", "cpu")
NAMES = ["%s: %s" % (o, w) for o in OVERLAYS
         for w in ("renders", "validates", "stop budget", "probes", "hardening", "api keys",
                   "gpu resources", "monitoring")]
K8S = os.path.join(H.SRCDIR, "deploy", "k8s")


def kubectl():
    k = os.environ.get("KUBECTL") or shutil.which("kubectl")
    return k if k and os.access(k, os.X_OK) else None


def source(path):
    with open(os.path.join(H.SRCDIR, path)) as f:
        return f.read()


def only(objs, kind):
    got = [o for o in objs if o.get("kind") == kind]
    if len(got) != 1:
        raise AssertionError("%d objects of kind %s" % (len(got), kind))
    return got[0]


def check_overlay(kc, yaml, kv, overlay):
    name = lambda w: "%s: %s" % (overlay, w)  # noqa: E731
    r = subprocess.run([kc, "kustomize", os.path.join(K8S, "overlays", overlay)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        R.fail(name("renders"), r.stderr[-1500:])
        return
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    kinds = sorted(o.get("kind", "?") for o in objs)
    R.check(name("renders"), kinds == ["Deployment", "HorizontalPodAutoscaler", "PodMonitor",
                                       "Service"], "kinds %r" % kinds)

    version = kv.latest_version()
    bad, skipped = [], []
    for o in objs:
        try:
            kv.validate(o, version, strict=True)
        except kv.SchemaNotFoundError:
            skipped.append("%s %s" % (o.get("apiVersion"), o.get("kind")))
        except kv.ValidationError as ex:
            bad.append("%s: %s" % (o.get("kind"), str(ex)[:300]))
    R.check(name("validates"), not bad and len(skipped) < len(objs),
            "against Kubernetes %s: %s" % (version, "; ".join(bad)))
    for s in skipped:
        R.skip(name("validates " + s), "kubernetes-validate has no schema for this custom resource")

    dep = only(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args", [])

    def case(what, fn):
        R.attempt(name(what), fn)

    def stop_budget():
        drain = int(args[args.index("--drain-timeout") + 1])
        cmd = c["lifecycle"]["preStop"]["exec"]["command"]
        pre = int(cmd[-1]) if cmd[0].endswith("sleep") else None
        grace = pod["terminationGracePeriodSeconds"]
        live = c["livenessProbe"]["periodSeconds"] * c["livenessProbe"]["failureThreshold"]
        return (pre is not None and grace > pre + drain and live > drain,
                "grace %r, preStop %r, drain %r, liveness gives up after %r s"
                % (grace, pre, drain, live))
    case("stop budget", stop_budget)

    def probes():
        routes = source("server/routes.c")
        want = {"startupProbe": "/health/ready", "readinessProbe": "/health/ready",
                "livenessProbe": "/health/live"}
        got = {p: c[p]["httpGet"]["path"] for p in want}
        served = all('"%s"' % path in routes for path in want.values())
        start = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        return (got == want and served and start >= 300,
                "paths %r (served by routes.c: %r), startup allows %r s" % (got, served, start))
    case("probes", probes)

    def hardening():
        sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
        ok = (psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0
              and sc.get("readOnlyRootFilesystem") is True
              and sc.get("allowPrivilegeEscalation") is False
              and sc.get("capabilities", {}).get("drop") == ["ALL"])
        return ok, "pod %r, container %r" % (psc, sc)
    case("hardening", hardening)

    def api_keys():
        env = {e["name"]: e for e in c.get("env", [])}
        path = env.get("LLAMAD_API_KEY_FILE", {}).get("value", "")
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        hit = [n for n, m in mounts.items() if path.startswith(m["mountPath"].rstrip("/") + "/")]
        secret = hit and "secret" in vols[hit[0]] and mounts[hit[0]].get("readOnly") is True
        in_env = [e["name"] for e in c.get("env", []) if "valueFrom" in e]
        model = mounts.get("models", {})
        ok = (secret and not in_env and "LLAMAD_API_KEY_FILE" in source("conf/llamad-entrypoint")
              and model.get("readOnly") is True and "/models/model.gguf" in args)
        return ok, ("key file %r in mount %r, secrets in the environment %r, model mount %r"
                    % (path, hit, in_env, model))
    case("api keys", api_keys)

    def gpu_resources():
        lim = c.get("resources", {}).get("limits", {})
        has = str(lim.get("nvidia.com/gpu", "")) == "1"
        return has == (overlay == "gpu"), "limits %r" % lim
    case("gpu resources", gpu_resources)

    def monitoring():
        pm = only(objs, "PodMonitor")
        hpa = only(objs, "HorizontalPodAutoscaler")
        ep = pm["spec"]["podMetricsEndpoints"][0]
        ports = [p["name"] for p in c["ports"]]
        sel = pm["spec"]["selector"]["matchLabels"].items() <= \
            dep["spec"]["template"]["metadata"]["labels"].items()
        metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
        exported = re.search(r'"%s"' % re.escape(metric), source("server/metrics.c")) is not None
        target = hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
        ok = (ep["port"] in ports and ep["path"] == "/metrics" and sel and exported and target
              and "authorization" in ep)
        return ok, ("PodMonitor port %r of %r, selector matches %r; HPA metric %r exported: %r, "
                    "target ok %r" % (ep["port"], ports, sel, metric, exported, target))
    case("monitoring", monitoring)


def main():
    kc = kubectl()
    if kc is None:
        for n in NAMES:
            R.skip(n, "kubectl is not installed (Debian package kubernetes-client; "
                      "scripts/setup installs it)")
        return
    kv = H.import_or_skip_all(R, NAMES, "kubernetes_validate")
    yaml = H.import_or_skip_all(R, NAMES, "yaml")
    for o in OVERLAYS:
        check_overlay(kc, yaml, kv, o)


if __name__ == "__main__":
    main()
    R.finish()
