#!/usr/bin/env bash
# End to end on a throwaway kind cluster: cert-manager, an OpenBao dev server,
# both images, the cert-manager overlay, store setup, a sample app whose secrets
# are checked, and a typo'd pod that must be denied. Deletes the cluster at the
# end (KEEP=1 keeps it for a look).
#
# Needs docker, kind, kubectl and `make install` (for python and the hack scripts).
#   hack/e2e-kind.sh
set -euo pipefail

CLUSTER=${CLUSTER:-latchkey-e2e}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.18.2}
OPENBAO_IMAGE=${OPENBAO_IMAGE:-quay.io/openbao/openbao:2.7.2}
VERSION=0.1.0
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d)
PORT_FORWARD=""
export KUBECONFIG="$WORK/kubeconfig"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# Run "$@" until it succeeds, up to 30 tries 2s apart (webhooks that just started).
retry() {
  local try
  for try in $(seq 30); do
    "$@" && return 0
    echo "  (try $try failed; retrying)"
    sleep 2
  done
  fail "gave up: $*"
}

cleanup() {
  local status=$?
  if [[ -n $PORT_FORWARD ]]; then kill "$PORT_FORWARD" 2>/dev/null || true; fi
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "kept cluster $CLUSTER; KUBECONFIG=$KUBECONFIG"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT

step "cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s

step "cert-manager $CERT_MANAGER_VERSION"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=180s

step "OpenBao dev server (in memory, plain HTTP: for this test only)"
kubectl create namespace openbao
kubectl -n openbao create deployment openbao --image="$OPENBAO_IMAGE" --port=8200 -- \
  bao server -dev -dev-root-token-id=root -dev-listen-address=0.0.0.0:8200
kubectl -n openbao expose deployment openbao --port=8200
kubectl -n openbao rollout status deployment/openbao --timeout=180s
kubectl -n openbao exec deploy/openbao -- env BAO_ADDR=http://127.0.0.1:8200 BAO_TOKEN=root \
  bao kv put secret/demo/db username=demo password=e2e-password >/dev/null

step "images"
for part in webhook sidecar; do
  docker build -q -f "$REPO/Dockerfile.$part" -t "latchkey-$part:$VERSION" "$REPO"
  kind load docker-image --name "$CLUSTER" "latchkey-$part:$VERSION"
done

step "Latchkey (cert-manager overlay, store address set by an overlay of our own)"
mkdir "$WORK/overlay"
base=$("$PYTHON" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$REPO/manifests/overlays/cert-manager" "$WORK/overlay")
cat >"$WORK/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: latchkey
resources: [$base]
configMapGenerator:
  - {name: latchkey-config, behavior: replace, files: [config.yaml]}
EOF
cat >"$WORK/overlay/config.yaml" <<EOF
stores:
  default:
    kind: vault
    address: http://openbao.openbao.svc:8200
    auth: {method: jwt, mount: jwt, audience: openbao}
agent: {image: latchkey-sidecar:$VERSION, imagePullPolicy: Never}
EOF
retry kubectl apply -k "$WORK/overlay"
kubectl -n latchkey wait --for=condition=Ready certificate/latchkey-webhook --timeout=120s
kubectl -n latchkey rollout status deployment/latchkey-webhook --timeout=180s
ca_bundle_set() {
  [[ -n $(kubectl get mutatingwebhookconfiguration latchkey \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}') ]]
}
retry ca_bundle_set

step "store setup: JWT auth from the cluster's JWKS"
kubectl get --raw /openid/v1/jwks >"$WORK/jwks.json"
issuer=$(kubectl get --raw /.well-known/openid-configuration |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["issuer"])')
cat >"$WORK/plan.yaml" <<EOF
audience: openbao
auth: {method: jwt, jwksFile: jwks.json, issuer: "$issuer"}
roles:
  - {namespace: latchkey-demo, serviceAccount: demo, read: [secret/data/demo/*], tokenTtl: 10m}
EOF
kubectl -n openbao port-forward svc/openbao 18200:8200 >/dev/null &
PORT_FORWARD=$!
retry "$PYTHON" -c 'import socket; socket.create_connection(("127.0.0.1", 18200), 1)'
BAO_TOKEN=root "$PYTHON" "$REPO/hack/store-setup.py" --address http://127.0.0.1:18200 \
  "$WORK/plan.yaml"

step "sample app"
kubectl apply -f "$REPO/manifests/examples/sample-app.yaml"
kubectl -n latchkey-demo wait --for=condition=Ready pod/demo --timeout=180s
[[ $(kubectl -n latchkey-demo get pod demo \
  -o jsonpath='{.metadata.annotations.latchkey\.dev/status}') == injected ]] ||
  fail "the pod was not injected"
kubectl -n latchkey-demo exec demo -c app -- cat /latchkey/secrets/db | grep -q '"e2e-password"' ||
  fail "the secret file does not hold the stored password"
kubectl -n latchkey-demo exec demo -c app -- cat /proc/1/environ | tr '\0' '\n' |
  grep -qx 'DB_PASSWORD=e2e-password' || fail "the app did not start with DB_PASSWORD"
echo "secret file and env var delivered"

step "a typo is denied at admission, naming the annotation"
denied=$(kubectl -n latchkey-demo run typo --image=busybox:1.37 --dry-run=server \
  --annotations=latchkey.dev/inject=true --annotations=latchkey.dev/secrt-db=secret/data/demo/db \
  -- sleep 1 2>&1) && fail "a pod with latchkey.dev/secrt-db was admitted"
grep -q 'latchkey.dev/secrt-db' <<<"$denied" || fail "denial does not name the annotation: $denied"
echo "denied: $denied"

step "PASS"
