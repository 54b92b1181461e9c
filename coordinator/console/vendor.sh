#!/usr/bin/env bash
# Refreshes the console's vendored uPlot (the pinned version below) from
# the npm registry: its built IIFE file, stylesheet and license go to
# assets/vendor and are committed, so `make build` needs no network or Node.
set -euo pipefail
UPLOT_VERSION=1.6.32
cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz")
cp "$scratch/package/dist/uPlot.iife.min.js" "$scratch/package/dist/uPlot.min.css" assets/vendor/
cp "$scratch/package/LICENSE" assets/vendor/uPlot.LICENSE
echo "uPlot $UPLOT_VERSION vendored in $(pwd)/assets/vendor"
