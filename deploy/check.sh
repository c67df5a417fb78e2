#!/usr/bin/env bash
# CI checks of the SAM application (after `make test`, which creates .venv):
#   1. cfn-lint deploy/template.yaml
#   2. sam validate --lint
#   3. sam build of the layer and every zip function, without a container
#   4. each build's unzipped size (function + layers) against Lambda's 250 MB
#   5. each build imported by python3.12 with only its code, its layers and boto3
# aws-sam-cli lives in its own virtualenv (build/sam-venv): its pinned boto3 and friends
# never touch the project's .venv. No AWS credentials are needed; sam wants a region.
# The container-image function (MonthlyFunction) needs Docker to build, which CI does not
# have: its Dockerfile is checked statically by tests/deploy/test_packaging.py.
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_CLI_VERSION=1.170.0
SAM_VENV=${SAM_VENV:-build/sam-venv}
case $SAM_VENV in /*) ;; *) SAM_VENV=$PWD/$SAM_VENV ;; esac
BUILD_DIR=${SAM_BUILD_DIR:-build/sam}
PROJECT_PYTHON=${PROJECT_PYTHON:-.venv/bin/python}
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

started=$(date +%s)
step() {  # step NAME COMMAND...: run, and say how long it took
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "== $name"
  "$@"
  echo "== $name: $(($(date +%s) - t0)) s"
}

install_sam() {
  if [ -x "$SAM_VENV/bin/sam" ] && "$SAM_VENV/bin/sam" --version | grep -q "$SAM_CLI_VERSION"; then
    echo "aws-sam-cli $SAM_CLI_VERSION already in $SAM_VENV"
    return
  fi
  python3 -m venv "$SAM_VENV"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
}

build() {
  # The versions the test suite ran with, for the wheels stage.py installs.
  mkdir -p build
  "$PROJECT_PYTHON" -m pip list --format=freeze --exclude-editable >build/lambda-constraints.txt
  local excluded=() image
  for image in $("$PROJECT_PYTHON" deploy/lambda_sizes.py --list-images deploy/template.yaml); do
    excluded+=(--exclude "$image")
  done
  rm -rf "$BUILD_DIR"
  PYTHON="$SAM_VENV/bin/python" WATTSTREAM_CONSTRAINTS="$PWD/build/lambda-constraints.txt" \
    "$SAM_VENV/bin/sam" build --template deploy/template.yaml --build-dir "$BUILD_DIR" \
    --parallel "${excluded[@]}"
}

smoke() {
  # A Python of the Lambda runtime's version; boto3 stands in for the runtime's own.
  local python="" candidate
  for candidate in python3.12 "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12; do
    if "$candidate" --version >/dev/null 2>&1; then python=$candidate && break; fi
  done
  if [ -z "$python" ]; then
    echo "python3.12 not found: import smoke test SKIPPED"
    return
  fi
  [ -d build/lambda-runtime/boto3 ] ||
    "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile \
      --target build/lambda-runtime boto3
  "$PROJECT_PYTHON" deploy/smoke_import.py "$BUILD_DIR" --python "$python" \
    --runtime-packages build/lambda-runtime
}

step "install aws-sam-cli $SAM_CLI_VERSION into $SAM_VENV" install_sam
step "cfn-lint" "$SAM_VENV/bin/cfn-lint" deploy/template.yaml
step "sam validate --lint" "$SAM_VENV/bin/sam" validate --lint --template deploy/template.yaml
step "sam build (layer + zip functions, no container)" build
step "Lambda sizes" "$PROJECT_PYTHON" deploy/lambda_sizes.py "$BUILD_DIR"
step "import every built function with only its code + layers (python3.12)" smoke
echo "SAM checks passed in $(($(date +%s) - started)) s"
