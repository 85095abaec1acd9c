#!/usr/bin/env bash
# Multi-node DDP training with torchrun: run this once on every node.
#
#   MASTER_ADDR=10.0.0.1 NNODES=2 NODE_RANK=0 NPROC_PER_NODE=4 deploy/train/torchrun.sh --config configs/train-default.yaml
#   MASTER_ADDR=10.0.0.1 NNODES=2 NODE_RANK=1 NPROC_PER_NODE=4 deploy/train/torchrun.sh --config configs/train-default.yaml
#
# torchrun starts NPROC_PER_NODE processes per node and exports RANK/LOCAL_RANK/WORLD_SIZE; Lightning
# detects that environment (TorchElasticEnvironment) and does not launch processes itself. Only global
# rank 0 exports, verifies and publishes, after training has finished on every rank.
# Kubeflow's PyTorchJob sets PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR and
# PET_MASTER_PORT; they are used when the plain names are unset.
# Extra arguments go to `edgeferry train` (e.g. --config FILE, --store s3://bucket/prefix, --set k=v).
set -euo pipefail

NNODES="${NNODES:-${PET_NNODES:-1}}"
NODE_RANK="${NODE_RANK:-${PET_NODE_RANK:-0}}"
NPROC_PER_NODE="${NPROC_PER_NODE:-${PET_NPROC_PER_NODE:-1}}"
MASTER_ADDR="${MASTER_ADDR:-${PET_MASTER_ADDR:-127.0.0.1}}"
MASTER_PORT="${MASTER_PORT:-${PET_MASTER_PORT:-29500}}"
PYTHON="${PYTHON:-$(command -v python3)}"
# The module torchrun runs on every rank; the default is the full pipeline (train, export, verify, publish).
TRAIN_MODULE="${TRAIN_MODULE:-edgeferry.cli}"
TRAIN_COMMAND="${TRAIN_COMMAND-train}"

for n in NNODES NODE_RANK NPROC_PER_NODE MASTER_PORT; do
  if ! [[ "${!n}" =~ ^[0-9]+$ ]]; then
    echo "error: $n must be a non-negative integer, got '${!n}'" >&2
    exit 2
  fi
done
if (( NODE_RANK >= NNODES )); then
  echo "error: NODE_RANK=$NODE_RANK must be below NNODES=$NNODES" >&2
  exit 2
fi

echo "torchrun: node $NODE_RANK of $NNODES, $NPROC_PER_NODE processes per node, rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
# shellcheck disable=SC2086  # TRAIN_COMMAND may be empty (python -m cloud.train takes no subcommand)
exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" \
  --node-rank "$NODE_RANK" \
  --nproc-per-node "$NPROC_PER_NODE" \
  --master-addr "$MASTER_ADDR" \
  --master-port "$MASTER_PORT" \
  -m "$TRAIN_MODULE" $TRAIN_COMMAND \
  --devices "$NPROC_PER_NODE" --num-nodes "$NNODES" --strategy ddp "$@"
