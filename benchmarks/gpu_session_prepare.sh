#!/usr/bin/env bash
# Copies what benchmarks/gpu_session.sh needs from ../shared into DIR (default .gpu, ignored through
# .git/info/exclude), with the Python wheels the GPU image lacks, so that the device tool can carry DIR.
#
#   benchmarks/gpu_session_prepare.sh [DIR]
set -euo pipefail
dir=${1:-.gpu}
shared=${SHARED:-../shared}
exclude="$(git rev-parse --git-common-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
grep -qx "/$dir/" "$exclude" 2>/dev/null || echo "/$dir/" >>"$exclude"
rm -rf "$dir" && mkdir -p "$dir/folder5/train" "$dir/folder5/val" "$dir/weights"
# 5 classes of imagenette_small (224 px JPEGs): 40 training and 20 test images each.
for c in $(ls "$shared/data/imagenette_small/train" | sort | head -5); do
  mkdir -p "$dir/folder5/train/$c" "$dir/folder5/val/$c"
  ls "$shared/data/imagenette_small/train/$c" | sort | head -40 | while read -r f; do
    cp "$shared/data/imagenette_small/train/$c/$f" "$dir/folder5/train/$c/"; done
  ls "$shared/data/imagenette_small/val/$c" | sort | head -20 | while read -r f; do
    cp "$shared/data/imagenette_small/val/$c/$f" "$dir/folder5/val/$c/"; done
done
cp -r "$shared/data/cifar10_test_1k" "$dir/"
cp "$shared/weights/cifar10_resnet/"* "$dir/weights/"
"$shared/tools/gpu-wheels.sh" "$dir/wheels" jsonschema==4.25.1 referencing==0.37.0 \
  jsonschema-specifications==2025.9.1 rpds-py >/dev/null
du -sh "$dir"
