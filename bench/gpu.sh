#!/usr/bin/env bash
# Whisper on an NVIDIA GPU: RTF of tiny.en and base at batch 1 and batched, and live
# streams per GPU until the latency goal breaks (docs/bench.md, "bench/gpu.sh").
#
#   bench/gpu.sh                 # on a machine with an NVIDIA GPU: writes bench/results/gpu.json
#   bench/gpu.sh --dry-run       # anywhere: every step tiny, on the CPU (checks the script)
#   bench/gpu.sh -- --models base --batch-sizes 8,16,32   # further options for bench.gpu_asr
#
# Not part of CI and never needed by it. Commit bench/results/gpu.json after a real run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dry_run=0
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run|--cpu) dry_run=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$root"
if ! command -v uv >/dev/null 2>&1; then
    echo "gpu.sh: uv is not installed (https://docs.astral.sh/uv/)" >&2
    exit 2
fi
for tool in espeak-ng sox; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "gpu.sh: $tool is needed for the test speech: apt-get install -y espeak-ng sox" >&2
        exit 2
    fi
done

if [[ $dry_run -eq 1 ]]; then
    echo "gpu.sh: dry run on the CPU (tiny.en, a few seconds of audio; figures mean nothing)" >&2
    exec uv run --frozen python -m bench.gpu_asr --dry-run "${extra[@]}"
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu.sh: no NVIDIA GPU here (nvidia-smi is missing or sees no device)." >&2
    echo "        Run it on a machine with an NVIDIA GPU and its driver, or use --dry-run" >&2
    echo "        to check the script on the CPU." >&2
    exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
gpus="$(uv run --frozen python -c 'import ctranslate2; print(ctranslate2.get_cuda_device_count())' 2>/dev/null || echo 0)"
if [[ "$gpus" == "0" ]]; then
    echo "gpu.sh: CTranslate2 sees no CUDA device although nvidia-smi does." >&2
    echo "        Its wheels need CUDA 12's cuBLAS and cuDNN 9, e.g.:" >&2
    echo "        uv pip install nvidia-cublas-cu12 nvidia-cudnn-cu12==9.*" >&2
    echo "        export LD_LIBRARY_PATH=\$(uv run python -c 'import os, nvidia.cublas.lib, nvidia.cudnn.lib; print(os.path.dirname(nvidia.cublas.lib.__file__) + \":\" + os.path.dirname(nvidia.cudnn.lib.__file__))')" >&2
    exit 3
fi
out="$here/results/gpu.json"
uv run --frozen python -m bench.gpu_asr --device cuda --out "$out" "${extra[@]}"
echo "gpu.sh: wrote $out" >&2
