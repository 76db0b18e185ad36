#!/usr/bin/env bash
# The GPU checks of issue 15, prepared to run as they are on a CUDA machine, one stage per call
# (each well under 10 minutes; none has run yet):
#   bash benchmarks/gpu_session.sh tests    # the kernel's tests natively + the CUDA head tests
#   bash benchmarks/gpu_session.sh heads    # benchmarks/heads_gpu.py -> results/heads_gpu.json,
#                                           # and benchmarks/fused_vs_dense_cuda.py
#   INSIGHTFACE=/path/to/insightface/recognition/arcface_torch \
#     bash benchmarks/gpu_session.sh train  # train_throughput.py against InsightFace's step
# PYTHON picks the interpreter (default: python). The InsightFace copy stays outside the project.
# The train stage runs marginface's step on the kernel (MARGINFACE_FUSED_PATH=triton, opt-in
# until measured) and again on the chunked PyTorch path, so the default can be chosen from it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
case "${1:-}" in
    tests)
        "$PY" -m pytest -q -p no:cacheprovider tests/heads/test_triton_margin.py \
            tests/heads/test_cuda.py tests/heads/test_fused.py
        ;;
    heads)
        "$PY" benchmarks/heads_gpu.py --json benchmarks/results/heads_gpu.json
        "$PY" benchmarks/fused_vs_dense_cuda.py
        ;;
    train)
        : "${INSIGHTFACE:?set INSIGHTFACE to the arcface_torch folder of an InsightFace copy}"
        for path in triton torch; do
            MARGINFACE_FUSED_PATH=$path "$PY" benchmarks/train_throughput.py --device cuda \
                --backbones iresnet50 --amp bf16 --batch-size 128 512 --classes 93431 \
                --setups plain pfc insightface --sample-rates 1.0 0.2 \
                --insightface "$INSIGHTFACE" --steps 20 --warmup 5 \
                --json "benchmarks/results/train_throughput_gpu_$path.json"
        done
        ;;
    *)
        echo "usage: bash benchmarks/gpu_session.sh tests|heads|train" >&2
        exit 2
        ;;
esac
