#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when they are missing. wabulk never downloads a
# browser itself (Selenium Manager cannot work offline), so the system packages are the source.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if { have chromium || have google-chrome || have chromium-browser; } && have chromedriver; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && have apt-get; then
    echo ">> installing chromium and chromium-driver with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
    exit 0
fi
echo "wabulk needs Chromium and its driver. Install them, e.g.: sudo apt-get install chromium chromium-driver" >&2
echo "(or set WABULK_CHROME_BINARY and WABULK_CHROMEDRIVER to an installed Chrome and matching chromedriver)" >&2
exit 1
