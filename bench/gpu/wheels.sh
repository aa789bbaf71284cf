#!/usr/bin/env bash
# Wheels for a GPU machine without a package index: what bench/gpu/run.sh needs beyond the image's
# torch, accelerate and pyarrow, at the versions installed in this checkout's .venv, for CPython 3.12
# on x86_64 Linux. run.sh installs whatever lies in .whl/ before it starts.
#
#   bash bench/gpu/wheels.sh [DIR]       # default .whl; prints the total size (the carry limit is 64 MiB)
#
# PYTHON_VERSION (3.12) and PACKAGES (the list below) change it.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-.whl}
PY=${PY:-.venv/bin/python}
PACKAGES=${PACKAGES:-"transformers huggingface_hub httpx2 httpcore2 truststore idna hf-xet click anyio kernels tomlkit
  peft tokenizers safetensors hydra-core omegaconf antlr4-python3-runtime datasets dill multiprocess xxhash fsspec"}
mkdir -p "$DIR"
# shellcheck disable=SC2086
pins=$("$PY" - $PACKAGES <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed in this environment, so no version to match: {', '.join(missing)}")
PYEOF
)
for pin in $pins; do
    # A binary or pure-Python wheel for the target Python; a package published only as source
    # (antlr4-python3-runtime 4.9.3) is built into a pure-Python wheel here.
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
        --python-version "${PYTHON_VERSION:-3.12}" --platform manylinux_2_28_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$DIR" "$pin" 2>/dev/null ||
        "$PY" -m pip wheel --quiet --no-deps -w "$DIR" "$pin"
done
du -ch "$DIR"/*.whl | tail -1
