#!/usr/bin/env bash
# Builds the dashboard pictures' page script (src/main.jsx with Grafana's @grafana/ui and
# @grafana/data) into $DHE_PICTURES_CACHE/<key>/pictures.js, outside the repository:
# `npm ci` from package-lock.json, then esbuild. <key> names these sources (grafana/render.py
# computes the same), so a changed source or lock builds anew and a current one does nothing.
# scripts/testbed.sh runs it; it needs node and npm and the npm registry.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${DHE_PICTURES_CACHE:-/var/cache/docker-host-exporter/pictures}
key=$(cd "$here" && cat package.json package-lock.json src/main.jsx build.sh | sha256sum | cut -c1-16)
out=$cache/$key

if [ -s "$out/pictures.js" ]; then
    echo "$out/pictures.js"
    exit 0
fi

work=$cache/work
mkdir -p "$work/src"
cp "$here/src/main.jsx" "$work/src/"
(
    cd "$work"
    # npm ci removes node_modules first and installs exactly the lock file; a tree that npm ci
    # finished from the same package.json and lock is that already.
    if ! cmp -s "$here/package-lock.json" installed.lock || ! cmp -s "$here/package.json" package.json; then
        rm -f installed.lock
        cp "$here/package.json" "$here/package-lock.json" .
        timeout 900 npm ci --no-audit --no-fund --loglevel=error >&2
        cp package-lock.json installed.lock
    fi
    timeout 300 npm run --silent build >&2
)
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp "$work/dist/pictures.js" "$work/dist/pictures.css" "$out.tmp/"
# The icons @grafana/ui ships, where its Icon asks for them (public/build/img/icons/...).
mkdir -p "$out.tmp/public/build"
cp -r "$work/node_modules/@grafana/ui/dist/public/img" "$out.tmp/public/build/img"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/pictures.js"
