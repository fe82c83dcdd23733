#!/bin/sh
# Completes a compiled tree (`npm run build` -> dist/) so that it runs on its own, as in the
# container image: code finds its files relative to its own folder (__dirname), so the
# default kubefiles go to <dist>/kubefiles, the recorded histories to
# <dist>/test/fixtures/histories, and every non-TypeScript file of the runtime folders (e.g.
# api/ui/) goes beside the JavaScript compiled from its folder.
# Usage: deploy/dist-assets.sh [DIST]   (from the repository root; DIST defaults to dist)
set -eu
dist="${1:-dist}"
rm -rf "$dist/kubefiles" "$dist/test"
cp -R kubefiles "$dist/kubefiles"
# Every release's recorded histories: the worker replays the latest one's before it polls.
mkdir -p "$dist/test/fixtures"
cp -R test/fixtures/histories "$dist/test/fixtures/histories"
for dir in common workflows activities worker api; do
  [ -d "$dir" ] || continue
  find "$dir" -type f ! -name '*.ts' | while IFS= read -r file; do
    mkdir -p "$dist/$(dirname "$file")"
    cp "$file" "$dist/$file"
  done
done
