#!/bin/sh
# The GPU latency bench (issue #4), for a lent GPU machine that has no Rust toolchain.
#
# Here (once):  cargo xtask device-bundle          # -> .device/speedup.xz and the Vulkan loader
#                                                  #    debs in .gl/ (both git-ignored)
# There:        sh scripts/device-bench.sh [FILTER] # with `.device` and `.gl` carried; results in $OUT
#                                                  # (FILTER: a criterion filter, default speedup_latency)
#
# Prints the card, then dense vs 50%-channel ResNet-18 and SmallCNN latency at batch 1 and 8 on
# the Vulkan GPU, then the same on that machine's CPU as the same-run baseline.
set -eu
FILTER=${1:-speedup_latency}
OUT=${OUT:-/tmp/device-bench}
mkdir -p "$OUT"
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$nvidia_icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES="$nvidia_icd"
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; nproc; } | tee "$OUT/card.txt"
xz -dc .device/speedup.xz > /tmp/speedup
chmod +x /tmp/speedup
cd /tmp
BURN_COMPRESS_DEVICE=vulkan ./speedup --bench "$FILTER" 2>&1 | tee "$OUT/speedup-vulkan.txt"
BURN_COMPRESS_DEVICE=cpu ./speedup --bench "$FILTER" 2>&1 | tee "$OUT/speedup-cpu.txt"
