#!/bin/bash
# Runs on the GPU host (device tool), after .ci/device_prepare.sh here. Two calls, back to back (a machine idle
# for 30 s is given back, with its /tmp):
#   run(command="cp .pd1/paddle.part.a /tmp/", carry=[".pd1"])
#   run(command="BUDGET_S=480 bash .ci/device_run.sh", carry=[".pd2"], timeout_s=540)
# It installs Paddle under /tmp/site, then runs, in order of worth and each bounded by what BUDGET_S leaves:
# the environment, the oneDNN convolution tests, the 2-core bench (train step; forward; two CPUs on different
# physical cores), the Paddle bf16 deploy stage (the host's Xeon has AMX), and the BN train-mode and gradient
# alignment stages on that CPU. (Torch on CUDA: `pytest alignment/ --torch-device cuda`, run in session 7.)
# At most 8 files come back: everything lands in one archive, $OUT/all.tgz, packed after each phase.
# PHASES (default: all, "tests train forward profile bf16 align") picks phases, e.g. PHASES="forward profile";
# profile: bench.profile's per-primitive oneDNN times of Paddle Inference at 352x704 and 352x1216.
set -u
want() { [[ " ${PHASES:-tests train forward profile bf16 align} " == *" $1 "* ]]; }
START=$(date +%s); END=$((START + ${BUDGET_S:-500}))
left() { echo $(( END - $(date +%s) )); }
ROOT=$PWD
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
FINAL=$OUT; OUT=/tmp/o; rm -rf $OUT; mkdir -p $OUT
pack() { tar czf $FINAL/all.tgz.part -C $OUT . && mv $FINAL/all.tgz.part $FINAL/all.tgz; }
if [ ! -d /tmp/site/paddle ]; then   # a warm machine keeps /tmp: install once
  mkdir -p /tmp/site
  cat /tmp/paddle.part.a .pd2/paddle.part.b | xz -dc -T0 | tar -x -C /tmp/site || { echo "paddle unpack failed"; exit 3; }
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .pd2/reprod_log-*.whl || exit 3
fi
export PYTHONPATH=/tmp/site:$ROOT
ldconfig -p | grep -q 'libgomp.so.1 ' || export LD_LIBRARY_PATH=$ROOT/.pd2/gomp
echo "installed after $(( $(date +%s) - START )) s"

# two CPUs on different physical cores, the CI machine's 2 cores as near as this host gets
PAIR=$($PY - <<'EOF'
import glob, re
cores = {}
for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/core_id"):
    cpu = int(re.search(r"cpu(\d+)/", p).group(1))
    key = (open(p.replace("core_id", "physical_package_id")).read().strip(), open(p).read().strip())
    cores.setdefault(key, []).append(cpu)
firsts = sorted(min(v) for v in cores.values())
print(f"{firsts[0]},{firsts[1]}")
EOF
)
{ date -u; lscpu; echo "bench cpus: $PAIR"; nvidia-smi -L
  $PY -c "import paddle, torch, torchvision; from paddle.base import core
print('paddle', paddle.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)
print('paddle supports_bfloat16', core.supports_bfloat16(), 'fast', core.supports_bfloat16_fast_performance())
from paddle_bts.inference import bf16_unsupported_reason; print('bf16_unsupported_reason:', bf16_unsupported_reason())"
} > $OUT/env.txt 2>&1
grep -E 'Model name|^CPU\(s\)|Thread|paddle|bf16|bench cpus' $OUT/env.txt
pack
grep -o -w -E 'avx512f|avx512_bf16|amx_bf16|amx_tile|avx512_vnni|avx2' $OUT/env.txt | sort -u | tr '\n' ' '; echo

want tests && { echo "== oneDNN convolution tests ($(left) s left)"
timeout -s INT 120 taskset -c $PAIR $PY -m pytest tests/test_onednn_conv.py -rA -q -p no:cacheprovider > $OUT/onednn_conv.log 2>&1
tail -3 $OUT/onednn_conv.log; pack; }

want train && { echo "== bench train step, cpus $PAIR ($(left) s left)"
timeout -s INT $(( $(left) - 300 )) taskset -c $PAIR $PY -m bench --threads 2 --repeats 3 --warmup 1 --max-seconds 60 \
  --torch-device cpu --paddle-device cpu --sizes none --backends torch-cpu,paddle-cpu \
  --out $OUT/bench_train > $OUT/bench_train.log 2>&1
tail -3 $OUT/bench_train.log; pack; }

want forward && { echo "== bench forward, cpus $PAIR ($(left) s left)"
timeout -s INT $(( $(left) - 150 )) taskset -c $PAIR $PY -m bench --threads 2 --repeats 3 --warmup 1 --max-seconds 40 \
  --torch-device cpu --paddle-device cpu --train-size none \
  --backends torch-cpu,paddle-cpu,paddle-inference-cpu,paddle-inference-cpu-bf16 --out $OUT/bench_fwd > $OUT/bench_fwd.log 2>&1
tail -3 $OUT/bench_fwd.log; pack; }

want profile && { echo "== Paddle Inference primitive by primitive, cpus $PAIR ($(left) s left)"
for size in 352x704 352x1216; do
  timeout -s INT 90 taskset -c $PAIR $PY -m bench.profile --threads 2 --size $size --out $OUT/onednn_profile_$size.md \
    > $OUT/profile_$size.log 2>&1
  grep -E "logged call|^- convolutions" $OUT/profile_$size.log
done; pack; }

want bf16 && { echo "== bf16 deploy stage ($(left) s left)"
timeout -s INT 100 $PY -m pytest alignment/test_deploy.py -k paddle-bf16 -rA -q -p no:cacheprovider > $OUT/bf16.log 2>&1
tail -5 $OUT/bf16.log
tar czf $OUT/reports_bf16.tgz --exclude='*.npy' --exclude='*.pdparams' --exclude='*.pth' --exclude='*.pdiparams' reports; pack; }

want align && { echo "== alignment on this CPU, 2 cores: BN train mode and gradients ($(left) s left)"
timeout -s INT $(( $(left) - 10 )) taskset -c $PAIR $PY -m pytest alignment/ -k "train_mode or gradients" -v -rfE \
  --durations=10 -p no:cacheprovider > $OUT/align_cpu.log 2>&1
tail -15 $OUT/align_cpu.log
tar czf $OUT/reports_cpu.tgz --exclude='*.npy' --exclude='*.pdparams' --exclude='*.pth' --exclude='*.pdiparams' reports; pack; }
echo "done after $(( $(date +%s) - START )) s"
