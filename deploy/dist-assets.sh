#!/bin/sh
# Completes a compiled tree (`npm run build` -> dist/) so that it runs on its own, as in the
# container image: code finds its files relative to its own folder (__dirname), so the
# default kubefiles go to <dist>/kubefiles and every non-TypeScript file of the runtime
# folders (e.g. api/ui/) goes beside the JavaScript compiled from its folder.
# Usage: deploy/dist-assets.sh [DIST]   (from the repository root; DIST defaults to dist)
set -eu
dist="${1:-dist}"
rm -rf "$dist/kubefiles"
cp -R kubefiles "$dist/kubefiles"
for dir in common workflows activities worker api; do
  [ -d "$dir" ] || continue
  find "$dir" -type f ! -name '*.ts' | while IFS= read -r file; do
    mkdir -p "$dist/$(dirname "$file")"
    cp "$file" "$dist/$file"
  done
done
