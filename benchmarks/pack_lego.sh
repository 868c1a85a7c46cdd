#!/usr/bin/env bash
# What benchmarks/gpu_check.sh needs of lego, for a machine without the dataset or a network:
# train/, both transforms files and every 4th val view (r_0, r_4, ..., r_96). ~53 MB.
#   bash benchmarks/pack_lego.sh SRC_LEGO_DIR DST_DIR
set -euo pipefail
src=$1; dst=$2
mkdir -p "$dst/val"
cp -r "$src/train" "$src/transforms_train.json" "$src/transforms_val.json" "$dst/"
for i in $(seq 0 4 96); do cp "$src/val/r_$i.png" "$dst/val/"; done
du -sh "$dst"
