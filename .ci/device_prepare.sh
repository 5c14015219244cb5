#!/usr/bin/env bash
# Packs Paddle (CPU, cp312) for the GPU host, which has torch but no Paddle and no registry.
# The wheel (195 MB) is over one call's 64 MiB carry: this drops what an import never reads (C++ headers, the
# OpenVINO CPU plugin, which is loaded only on request), xz-compresses the rest (106 MB) and splits it in two
# git-ignored folders, .pd1 and .pd2, one per `run` call (.ci/device_run.sh says how).
# Keep paddle/_typing: it is a runtime module, not only stubs (`import paddle` fails without it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux1_x86_64 -d "$work" paddlepaddle==3.3.1 reprod_log==1.0.1
mkdir "$work/tree"
unzip -q "$work"/paddlepaddle-*.whl -d "$work/tree"
rm -rf "$work/tree/paddle/include" "$work/tree/paddle/libs/libopenvino_intel_cpu_plugin.so"
tar -C "$work/tree" -cf - . | xz -T0 -6 > "$work/paddle.tar.xz"
rm -rf .pd1 .pd2
mkdir -p .pd1 .pd2/gomp
split -n 2 -d "$work/paddle.tar.xz" "$work/part."
mv "$work/part.00" .pd1/paddle.part.a
mv "$work/part.01" .pd2/paddle.part.b
cp "$work"/reprod_log-*.whl .pd2/
# the host's image may lack the GNU OpenMP runtime that Paddle's libcommon.so needs
cp -L "$(ldconfig -p | awk '/libgomp.so.1 /{print $NF; exit}')" .pd2/gomp/
du -sh .pd1 .pd2
