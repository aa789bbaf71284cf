# Sourced by run.sh and check.sh: the Python environment of a GPU machine without a package index.
# Wheels in .whl/ (bench/gpu/wheels.sh) go to /tmp/site first; this checkout's src/ and bench/ are
# importable; the hub is never asked (HF_HUB_OFFLINE=1).
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'gpu', torch.cuda.get_device_name())"
