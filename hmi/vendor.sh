#!/usr/bin/env bash
# Re-vendor the HMI's third-party browser code from the pinned lock file (make vendor).
# npm installs exactly package-lock.json's versions into a scratch directory; the built
# files the browser loads, and each package's licence, are copied into static/vendor/,
# which is committed: neither the plant core nor a browser fetches anything at run time.
set -euo pipefail
cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp package.json package-lock.json "$scratch/"
(cd "$scratch" && npm ci --ignore-scripts --no-audit --no-fund --silent)
modules="$scratch/node_modules"
vendor=static/vendor
rm -rf "$vendor"
mkdir -p "$vendor"/{uplot,graphiql,react,react-dom}
cp "$modules/uplot/dist/uPlot.esm.js" "$modules/uplot/dist/uPlot.min.css" "$modules/uplot/LICENSE" "$vendor/uplot/"
cp "$modules/graphiql/graphiql.min.js" "$modules/graphiql/graphiql.min.css" "$modules/graphiql/LICENSE" "$vendor/graphiql/"
cp "$modules/react/umd/react.production.min.js" "$modules/react/LICENSE" "$vendor/react/"
cp "$modules/react-dom/umd/react-dom.production.min.js" "$modules/react-dom/LICENSE" "$vendor/react-dom/"
# What was copied, at which version, so a reviewer can match it to the lock file.
for package in uplot graphiql react react-dom; do
  version=$(node -p "require('$modules/$package/package.json').version")
  echo "$package $version"
done > "$vendor/VERSIONS"
echo "vendored into hmi/$vendor:"; cat "$vendor/VERSIONS"
