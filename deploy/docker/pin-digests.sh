#!/usr/bin/env bash
# Rewrites the base-image ARGs of the Dockerfiles here from an exact tag to tag@sha256:digest,
# resolved from the registry now (needs `docker buildx` and registry access; the development
# machines of this project have neither). Run it when you cut a release, then commit the result:
#
#   deploy/docker/pin-digests.sh            # rewrite both Dockerfiles in place
#   deploy/docker/pin-digests.sh --check    # only print tag -> digest
set -euo pipefail
cd "$(dirname "$0")"
check=0
[[ ${1:-} == --check ]] && check=1
command -v docker >/dev/null || { echo "pin-digests: docker is not installed" >&2; exit 1; }

for file in deepsearch.Dockerfile coordinator.Dockerfile; do
    rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' "$file")
    for arg in RUST_IMAGE RUNTIME_IMAGE; do
        ref=$(sed -n "s/^ARG $arg=//p" "$file")
        [[ -n $ref ]] || continue
        resolved=${ref//\$\{RUST_VERSION\}/$rust_version}
        tag=${resolved%@*}
        digest=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest.Digest}}' | tr -d '"')
        [[ $digest == sha256:* ]] || { echo "pin-digests: no digest for $tag" >&2; exit 1; }
        echo "$file: $arg $tag@$digest"
        if [[ $check -eq 0 ]]; then
            sed -i "s|^ARG $arg=.*|ARG $arg=$tag@$digest|" "$file"
        fi
    done
done
