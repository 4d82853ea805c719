#!/usr/bin/env python3
"""Checks the ServiceMonitors in rendered Kubernetes manifests (kustomize build output).

kubeconform has no schema for the Prometheus Operator's CRDs offline, so this checks what
would make the operator reject or ignore a ServiceMonitor: the fields the CRD requires
(`spec.selector`, `spec.endpoints`, a `port` or `targetPort` per endpoint), no unknown
fields in `spec` or in an endpoint, durations in Prometheus' format with scrapeTimeout no
longer than interval, and that it selects a Service of the same manifests by its labels
and names one of that Service's ports.

The field names are those of monitoring.coreos.com/v1 ServiceMonitor in Prometheus Operator
v0.80 (as generated from its CRD in PyPI's cloudcoil-models-prometheus-operator 0.80.1.0).
A field added by a later operator release is reported as unknown: add it here.

Usage: check-servicemonitor.py RENDERED.yaml   (needs PyYAML)
"""

import re
import sys

import yaml

SPEC_FIELDS = {
    "attachMetadata", "bodySizeLimit", "endpoints", "fallbackScrapeProtocol", "jobLabel",
    "keepDroppedTargets", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "namespaceSelector", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
    "podTargetLabels", "sampleLimit", "scrapeClass", "scrapeClassicHistograms",
    "scrapeProtocols", "selector", "selectorMechanism", "targetLabels", "targetLimit",
}
ENDPOINT_FIELDS = {
    "authorization", "basicAuth", "bearerTokenFile", "bearerTokenSecret", "enableHttp2",
    "filterRunning", "followRedirects", "honorLabels", "honorTimestamps", "interval",
    "metricRelabelings", "oauth2", "params", "path", "port", "proxyUrl", "relabelings",
    "scheme", "scrapeTimeout", "targetPort", "tlsConfig", "trackTimestampsStaleness",
}
SELECTOR_FIELDS = {"matchLabels", "matchExpressions"}
# The CRD's pattern for interval and scrapeTimeout.
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
UNIT_MS = {"y": 365 * 86400000, "w": 7 * 86400000, "d": 86400000, "h": 3600000, "m": 60000, "s": 1000, "ms": 1}


def millis(duration):
    return sum(int(n) * UNIT_MS[u] for n, u in re.findall(r"([0-9]+)(ms|[ywdhms])", duration))


def check(monitor, services):
    """The problems of one ServiceMonitor, as strings."""
    name = (monitor.get("metadata") or {}).get("name")
    where = f"ServiceMonitor {name}"
    problems = []
    if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{where}: apiVersion is {monitor.get('apiVersion')!r}, want 'monitoring.coreos.com/v1'")
    if not name:
        problems.append(f"{where}: metadata.name is missing")
    spec = monitor.get("spec")
    if not isinstance(spec, dict):
        return problems + [f"{where}: spec is missing or not a mapping"]
    problems += [f"{where}: spec.{k} is not a ServiceMonitor field" for k in sorted(set(spec) - SPEC_FIELDS)]

    selector = spec.get("selector")
    if not isinstance(selector, dict):
        problems.append(f"{where}: spec.selector is required (a label selector)")
        selector = {}
    problems += [f"{where}: spec.selector.{k} is not a selector field" for k in sorted(set(selector) - SELECTOR_FIELDS)]
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        problems.append(f"{where}: spec.selector.matchLabels is not a mapping")
        match_labels = {}
    selected = [
        s for s in services
        if match_labels.items() <= ((s.get("metadata") or {}).get("labels") or {}).items()
    ]
    if not selected:
        problems.append(f"{where}: spec.selector.matchLabels {match_labels} selects no Service in these manifests")
    port_names = {p.get("name") for s in selected for p in ((s.get("spec") or {}).get("ports") or [])}

    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return problems + [f"{where}: spec.endpoints is required (a non-empty list)"]
    for i, endpoint in enumerate(endpoints):
        at = f"{where}: spec.endpoints[{i}]"
        if not isinstance(endpoint, dict):
            problems.append(f"{at} is not a mapping")
            continue
        problems += [f"{at}.{k} is not an endpoint field" for k in sorted(set(endpoint) - ENDPOINT_FIELDS)]
        port = endpoint.get("port")
        if port is None and endpoint.get("targetPort") is None:
            problems.append(f"{at}: needs port (a Service port's name) or targetPort")
        elif port is not None and not isinstance(port, str):
            problems.append(f"{at}.port is {port!r}: it is a Service port's name, a string")
        elif port is not None and selected and port not in port_names:
            problems.append(f"{at}.port {port!r} is not a port of the selected Service (ports: {sorted(n for n in port_names if n)})")
        path = endpoint.get("path")
        if path is not None and not str(path).startswith("/"):
            problems.append(f"{at}.path {path!r} does not start with '/'")
        for key in ("interval", "scrapeTimeout"):
            value = endpoint.get(key)
            if value is not None and not (isinstance(value, str) and value and DURATION.match(value)):
                problems.append(f"{at}.{key} {value!r} is not a Prometheus duration (e.g. 15s, 1m)")
        interval, timeout = endpoint.get("interval"), endpoint.get("scrapeTimeout")
        if all(isinstance(v, str) and v and DURATION.match(v) for v in (interval, timeout)):
            if millis(timeout) > millis(interval):
                problems.append(f"{at}: scrapeTimeout {timeout} is longer than interval {interval}")
    return problems


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    with open(sys.argv[1]) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    monitors = [d for d in documents if d.get("kind") == "ServiceMonitor"]
    services = [d for d in documents if d.get("kind") == "Service"]
    if not monitors:
        raise SystemExit(f"check-servicemonitor: no ServiceMonitor in {sys.argv[1]}")
    problems = [p for m in monitors for p in check(m, services)]
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"check-servicemonitor: {len(monitors)} ServiceMonitor(s) valid")


if __name__ == "__main__":
    main()
