#!/usr/bin/env bash
# The main job: set up, convert the offline models once, then batch-reproduce every paper
# notebook with papermill into results/ (executed notebooks, run directories, report.html).
#   bash scripts/reproduce.sh                      # quick profile (default; see README for measured times)
#   bash scripts/reproduce.sh --profile cpu        # fuller offline reproduction
#   bash scripts/reproduce.sh blockpruner --profile paper -p model=meta-llama/Llama-2-7b-hf
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --main   # no app, Jupyter Lab, test tools or Chromium: `bash scripts/setup.sh` adds them
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
.venv/bin/workbench models prepare all
exec .venv/bin/workbench reproduce "$@"
