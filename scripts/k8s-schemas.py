#!/usr/bin/env python3
"""Writes kubeconform's offline schemas for one Kubernetes version, from kubernetes-validate.

kubeconform's default schema host cannot be reached from CI, but the PyPI package
kubernetes-validate ships the same OpenAPI-derived JSON schemas, one file per kind
(`statefulset-apps-v1.json`, `service-v1.json`, ...), with the shared definitions in one
`_definitions.json` that each kind references as `/api/_definitions.json#/$defs/NAME`
under an `https://kubernetes.io/...` `$id`, which kubeconform would try to fetch.

This writes `OUT/vVERSION-standalone-strict/KIND.json` for every top-level kind: the kind's
schema with the definitions it reaches copied into its own `$defs`, its references made
local (`#/$defs/NAME`) and its `$id` dropped. That is the layout of kubeconform's default
location template, so `-schema-location 'OUT/{{ .NormalizedKubernetesVersion }}-standalone{{
.StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'` with `-strict` finds them.

Usage: k8s-schemas.py KUBERNETES_VERSION OUT   (run with the Python that has kubernetes-validate)
"""

import importlib.resources
import json
import os
import sys

SHARED_PREFIX = "/api/_definitions.json#/$defs/"
LOCAL_PREFIX = "#/$defs/"


def refs(node):
    """Every `$ref` string under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def localised(node):
    """node with its references to the shared definitions made local."""
    if isinstance(node, dict):
        return {
            key: (
                LOCAL_PREFIX + value[len(SHARED_PREFIX) :]
                if key == "$ref" and isinstance(value, str) and value.startswith(SHARED_PREFIX)
                else localised(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [localised(item) for item in node]
    return node


def standalone(schema, definitions):
    """schema with the definitions it reaches, transitively, in its own $defs."""
    schema = localised(schema)
    reached = {}
    pending = [r for r in refs(schema) if r.startswith(LOCAL_PREFIX)]
    while pending:
        name = pending.pop()[len(LOCAL_PREFIX) :]
        if name in reached:
            continue
        if name not in definitions:
            raise SystemExit(f"k8s-schemas: definition {name!r} is referenced but not defined")
        reached[name] = localised(definitions[name])
        pending.extend(r for r in refs(reached[name]) if r.startswith(LOCAL_PREFIX))
    schema.pop("$id", None)
    schema["$defs"] = dict(sorted(reached.items()))
    return schema


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    version, out = sys.argv[1].lstrip("v"), sys.argv[2]
    source = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    source = source / f"v{version}-local-strict"
    if not source.is_dir():
        raise SystemExit(f"k8s-schemas: kubernetes-validate has no schemas for Kubernetes {version}")
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = os.path.join(out, f"v{version}-standalone-strict")
    os.makedirs(target, exist_ok=True)
    written = 0
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name.startswith("_") or entry.name == "all.json" or not entry.name.endswith(".json"):
            continue
        schema = json.loads(entry.read_text())
        # Only the top-level kinds (those with an apiVersion and kind), not their parts.
        if "x-kubernetes-group-version-kind" not in schema:
            continue
        with open(os.path.join(target, entry.name), "w") as f:
            json.dump(standalone(schema, definitions), f, separators=(",", ":"))
        written += 1
    print(f"k8s-schemas: wrote {written} schemas for Kubernetes {version} to {target}")


if __name__ == "__main__":
    main()
