#!/usr/bin/env bash
# The browser the console's tests drive: Debian's Chromium (Playwright cannot download its own here).
#   scripts/browser.sh install   install it when /usr/bin/chromium is missing (idempotent)
#   scripts/browser.sh path      print the path the tests launch
set -euo pipefail

CHROMIUM="${PARLEY_CHROMIUM:-/usr/bin/chromium}"

install() {
    if [[ -x "$CHROMIUM" ]]; then
        echo "browser: $CHROMIUM is installed"
        return 0
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "browser: $CHROMIUM is missing; install Debian's chromium package as root:" >&2
        echo "    apt-get install -y chromium" >&2
        return 1
    fi
    echo "browser: installing Debian's chromium package"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
        || { "${sudo[@]}" apt-get update && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends chromium; }
    [[ -x "$CHROMIUM" ]] || { echo "browser: chromium installed but $CHROMIUM is not there" >&2; return 1; }
}

case "${1:-}" in
    install) install ;;
    path) echo "$CHROMIUM" ;;
    *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
