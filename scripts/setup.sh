#!/usr/bin/env bash
# Create .venv and install specmem with its test tools and the PostgreSQL driver. Safe to run again.
#
# torch comes first, as its CPU build: installed later, as a dependency of sentence-transformers, it would be
# PyPI's Linux wheel, which pulls CUDA (~20 nvidia-*/triton packages, several GB). On Linux the CPU build comes
# from PyTorch's own index (its `+cpu` version sorts above PyPI's); the resolution is checked with a dry run
# before anything is downloaded, and the script stops rather than pull CUDA. macOS and Windows wheels on PyPI
# are CPU builds already. SPECMEM_TORCH_CUDA=1 accepts a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_pin="torch==2.13.0"
cpu_index="https://download.pytorch.org/whl/cpu"
pip=(.venv/bin/python -m pip --disable-pip-version-check)

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi

torch_args=("$torch_pin")
if [ "$(uname -s)" = Linux ]; then
    # An extra index, not a replacement: pip's configured indexes (a mirror, a local wheel folder) still count,
    # so the set-up also works offline from a local CPU wheel. Retries off: an unreachable index fails at once.
    torch_args=(--retries 0 --timeout 20 --extra-index-url "$cpu_index" "$torch_pin")
    report=$(mktemp)
    trap 'rm -f "$report"' EXIT
    "${pip[@]}" install --quiet --dry-run --report "$report" "${torch_args[@]}"
    if ! .venv/bin/python - "$report" <<'EOF'
import json, sys
installs = json.load(open(sys.argv[1]))["install"]
cuda = sorted(
    f"{i['metadata']['name']} {i['metadata']['version']}"
    for i in installs
    if i["metadata"]["name"].lower().startswith(("nvidia-", "triton", "cuda-"))
)
torch = [i["metadata"]["version"] for i in installs if i["metadata"]["name"].lower() == "torch"]
if cuda:
    sys.exit(f"torch {torch[0] if torch else '?'} would bring CUDA: {', '.join(cuda)}")
EOF
    then
        if [ "${SPECMEM_TORCH_CUDA:-0}" != 1 ]; then
            echo "setup: stopped before downloading CUDA (several GB): PyTorch's CPU index ($cpu_index) was not" \
                "reachable and no CPU wheel of $torch_pin is configured. Make that index reachable, or point pip" \
                "at a CPU wheel (pip config set global.find-links DIR), or run with SPECMEM_TORCH_CUDA=1 to" \
                "accept the CUDA build." >&2
            exit 1
        fi
        echo "setup: SPECMEM_TORCH_CUDA=1: installing the CUDA build of torch" >&2
    fi
fi
"${pip[@]}" install --quiet "${torch_args[@]}"
# A distribution named `specmem` (this project's name before 0.1.0 was published as specmem-mcp, or PyPI's
# unrelated `specmem`) would claim the same `specmem` package and command: remove it first.
if .venv/bin/python -c 'import importlib.metadata as m; m.distribution("specmem")' 2>/dev/null; then
    "${pip[@]}" uninstall --quiet --yes specmem
fi
"${pip[@]}" install --quiet -e '.[test,postgres]'
# The editable install finds specmem through a finder Python consults after its path entries: run from the folder
# holding a clone named specmem, `import specmem` took the clone's folder for an empty namespace package (`module
# 'specmem' has no attribute 'open'`). This .pth (read after setuptools' own) puts that finder first.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import sys; sys.meta_path.sort(key=lambda f: not getattr(f, "__module__", "").startswith("__editable___specmem"))' \
    >"$site/specmem-editable-first.pth"
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda or "none")' >&2
echo "specmem installed in .venv: .venv/bin/specmem --help" >&2
