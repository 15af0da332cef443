#!/usr/bin/env bash
# Install the Debian packages of tests/system/packages.txt (or of the list given) whose command
# is missing (run by `make test`; `make test-image` gives image-packages.txt). `apt-get update`
# runs once, and only when something is missing.
set -euo pipefail
list="${1:-$(dirname "$0")/packages.txt}"
missing=()
while read -r command package; do
    [[ -z "${command}" || "${command}" == \#* ]] && continue
    if [[ "${command}" == */* ]]; then
        compgen -G "${command}" > /dev/null && continue
    elif command -v "${command}" > /dev/null 2>&1; then
        continue
    fi
    missing+=("${package}")
done < "${list}"
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages for the tests: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo > /dev/null 2>&1; then SUDO=sudo; else
        echo "not root: run 'apt-get install -y ${missing[*]}' first" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
${SUDO:-} apt-get update -qq
${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
