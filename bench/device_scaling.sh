#!/usr/bin/env bash
# Thread scaling on a many-core machine, in one command (a few minutes on 16 cores).
#
# What to copy: this repository and the shared data folder (granja2019_bmmc_hg19), e.g. to ~/fastembed and
# ~/shared/data, or point FASTEMBED_SHARED_DATA at the data. What to have: a Python with the package's
# dependencies and gensim (bench/README.md, "Set up"); PY names it (default: python3).
#
#   PY=.venv-bench/bin/python bash bench/device_scaling.sh [THREADS_LIST] [TOP] [HOT_ROWS]
#
# What it prints (and writes under bench/out/device_scaling_*):
# 1. granja2019: words/s of ours and gensim at 1, 2, 4, 8 and 16 threads (THREADS_LIST), 3 interleaved rounds,
#    the median of each round's own scaling (bench/train_vs_gensim.py --scaling); beside it ours-hot, ours with
#    private per-thread copies of the HOT_ROWS (default 512) most written output rows (sgns.PRIVATE_HOT_ROWS;
#    ours runs with 0), in the same interleaved rounds, and ours-hot / ours round by round.
# 2. At TOP threads (default 16): words/s of ours and gensim on granja2019 and on the synthetic corpus (5,000
#    cells x 100,000 regions), ours at 1 thread beside it (the 1 -> TOP scaling of both corpora), peak RSS, and
#    the quality of granja2019's embeddings trained at TOP threads (Leiden ARI, donor transfer accuracy), each
#    for ours and ours-hot (2 seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
THREADS_LIST=${1:-1,2,4,8,16}
TOP=${2:-16}
HOT_ROWS=${3:-512}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p bench/out
echo "machine: $(nproc) CPUs; $(lscpu | grep 'Model name' | sed 's/  */ /g'); load $(cut -d' ' -f1 /proc/loadavg)"
echo "== 1. granja2019 thread scaling ($THREADS_LIST) =="
"$PY" bench/train_vs_gensim.py --scaling "$THREADS_LIST" --scaling-repeats 3 --scaling-epochs 5 \
    --scaling-only --skip-synthetic --hot-rows-ab "$HOT_ROWS" --out bench/out/device_scaling_granja.json
echo "== 2. both corpora at $TOP threads, quality at $TOP threads =="
"$PY" bench/train_vs_gensim.py --threads "$TOP" --scaling "" --granja-epochs 30 --synthetic-epochs 3 \
    --repeats 2 --hot-rows-ab "$HOT_ROWS" --out "bench/out/device_scaling_$TOP.json"
