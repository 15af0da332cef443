#!/usr/bin/env bash
# A Debian bookworm base image with Python 3.11, built from Debian's packages with debootstrap
# and imported into podman: for machines that reach a Debian mirror but no image registry.
# With a registry, the Dockerfile's default base (python:3.11-slim) needs none of this.
#
#   deploy/image/build-base.sh [IMAGE]     (default IMAGE: localhost/modelserve-base:bookworm)
#
# The root filesystem is cached as a tarball under .tools/base/ (git-ignored), so a second run
# only imports it (a few seconds); delete the tarball to rebuild it. Needs root, debootstrap
# and podman (tests/system/image-packages.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
image="${1:-localhost/modelserve-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache=.tools/base
tarball="${cache}/bookworm-python3.11.tar"
# python3 is 3.11 on bookworm; python3-venv brings ensurepip (pip for the build stage);
# ca-certificates for HTTPS to object storage.
packages=python3,python3-venv,ca-certificates

if podman image exists "${image}"; then
    echo "base image ${image} is present"
    exit 0
fi
if [[ ! -f "${tarball}" ]]; then
    mkdir -p "${cache}"
    root="$(mktemp -d "${cache}/rootfs.XXXXXX")"
    trap 'rm -rf "${root}"' EXIT
    echo "debootstrap bookworm (${packages}) into ${root}"
    debootstrap --variant=minbase --include="${packages}" bookworm "${root}" "${mirror}" \
        > "${cache}/debootstrap.log" 2>&1 || { tail -20 "${cache}/debootstrap.log"; exit 1; }
    # What a container never needs: package lists, caches, docs, man pages, locales.
    rm -rf "${root}"/var/lib/apt/lists/* "${root}"/var/cache/apt/*.bin \
        "${root}"/var/cache/apt/archives/*.deb "${root}"/usr/share/doc/* \
        "${root}"/usr/share/man/* "${root}"/usr/share/info/* "${root}"/var/log/*.log
    find "${root}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
        -exec rm -rf {} +
    tar --numeric-owner -C "${root}" -cf "${tarball}.tmp" .
    mv "${tarball}.tmp" "${tarball}"
fi
echo "importing ${tarball} as ${image}"
podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "${tarball}" "${image}" > /dev/null
podman image ls "${image}"
