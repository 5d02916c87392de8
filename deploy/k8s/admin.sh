#!/usr/bin/env bash
# `deepsearch admin` against the coordinator inside a cluster, from a throwaway pod (the deepsearch
# image of the learner StatefulSet, the token from the deepsearch-admin Secret); nothing to install
# but kubectl. For `cache export/import` (files on your machine) use a port-forward instead
# (deploy/README.md, "Admin commands").
#
#   deploy/k8s/admin.sh -n deepsearch-demo status
#   deploy/k8s/admin.sh -n deepsearch problem show countdown-11-7
#   deploy/k8s/admin.sh -n deepsearch set-filter --delta 0.2
set -euo pipefail
ns=deepsearch
if [[ ${1:-} == -n ]]; then
    ns=$2
    shift 2
fi
if (($# == 0)); then
    echo "usage: admin.sh [-n NAMESPACE] ADMIN-COMMAND [ARGS...]   (deepsearch admin --help)" >&2
    exit 2
fi
image=$(kubectl -n "$ns" get statefulset deepsearch-learner \
    -o jsonpath='{.spec.template.spec.containers[0].image}')
json() { # a JSON string
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}
args=$(json admin)
for a in --coordinator deepsearch-coordinator:50051 "$@"; do args+=",$(json "$a")"; done
restricted='"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}'
overrides=$(
    cat <<JSON
{"apiVersion":"v1","spec":{
  "securityContext":{"runAsNonRoot":true,"runAsUser":10001,"runAsGroup":10001,"seccompProfile":{"type":"RuntimeDefault"}},
  "containers":[{"name":"admin","image":$(json "$image"),"args":[$args],
    "env":[{"name":"DEEPSEARCH_ADMIN_TOKEN","valueFrom":{"secretKeyRef":{"name":"deepsearch-admin","key":"token"}}}],
    "securityContext":{$restricted}}]}}
JSON
)
exec kubectl -n "$ns" run "deepsearch-admin-$$" --rm -i --quiet --restart=Never \
    --image="$image" --overrides="$overrides"
