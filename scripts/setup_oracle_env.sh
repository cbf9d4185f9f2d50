#!/usr/bin/env bash
# Build the PyTorch oracle environment: the interpreter that tests marked `oracle` run
# their reference scripts (tests/oracles/*.py) with. It lives outside uv.lock on purpose:
# torch and the reference packages would pull grain and wandb down in a shared lock.
#
#   bash scripts/setup_oracle_env.sh      # creates .venv-oracle/ at the repo root
#
# Idempotent: a stamp in the env holds the hash of tests/oracles/requirements.txt and
# requirements-nodeps.txt (packages installed with --no-deps: their declared dependencies
# would break the env), and a matching stamp skips all work. The env is made with
# python3 -m venv + pip, never uv: uv ignores pip's configuration and would fetch a
# multi-GB CUDA torch.
#
# Environment:
#   TRC_ORACLE_PYTHON       interpreter to use instead of .venv-oracle/bin/python (the
#                           tests read it too). If it is (or will be) <dir>/bin/python of
#                           a venv, the venv is created/updated at <dir>; any other
#                           interpreter is only checked against the pins, never installed into.
#   TRC_ORACLE_TORCH_INDEX  extra index for the CPU torch build, tried when reachable
#                           (default https://download.pytorch.org/whl/cpu; empty: off).
#                           Without it pip takes torch from its configured indexes; PyPI's
#                           Linux build is the CUDA one (GBs of nvidia wheels).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/tests/oracles/requirements.txt"
req_nodeps="$root/tests/oracles/requirements-nodeps.txt"
py="${TRC_ORACLE_PYTHON:-$root/.venv-oracle/bin/python}"
env_dir="$(dirname "$(dirname "$py")")"
stamp="$env_dir/.trc-oracle-stamp"
torch_index="${TRC_ORACLE_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
start=$SECONDS

fail() {
  echo "setup_oracle_env: FAILED after $((SECONDS - start)) s: $*" >&2
  exit 1
}
trap 'fail "command failed (line $LINENO); see the output above. Delete $env_dir to start over."' ERR

[[ -f "$req" ]] || fail "missing $req"
[[ -f "$req_nodeps" ]] || fail "missing $req_nodeps"
want="$(cat "$req" "$req_nodeps" | sha256sum | cut -d' ' -f1)"

# Every name==version pin of both requirement files is installed (a local label such
# as +cpu is ignored) and torch imports; exit status 1 with the mismatches otherwise.
check_pins() {
  "$py" - "$req" "$req_nodeps" <<'PY'
import re, sys
from importlib import metadata
bad = []
for line in (line for path in sys.argv[1:] for line in open(path)):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
    if not m:
        continue
    name, version = m.groups()
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != version:
        bad.append(f"{name}=={version} (installed: {have})")
if bad:
    sys.exit("not as pinned: " + ", ".join(bad))
import torch  # noqa: F401  (a CUDA build without its nvidia libraries fails here)
PY
}

if [[ ! -f "$env_dir/pyvenv.cfg" && -x "$py" ]]; then
  # Not a venv (a system or conda interpreter): check it, never pip into it.
  check_pins || fail "$py does not satisfy $req and $req_nodeps; point TRC_ORACLE_PYTHON" \
    "at a venv instead"
  echo "setup_oracle_env: $py satisfies the pins ($((SECONDS - start)) s)"
  exit 0
fi

if [[ -x "$py" ]] && "$py" -c "" 2>/dev/null && [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  echo "setup_oracle_env: $env_dir is up to date ($((SECONDS - start)) s)"
  exit 0
fi

[[ "$(basename "$(dirname "$py")")" == bin ]] || fail "$py is not <dir>/bin/python"
echo "setup_oracle_env: building $env_dir from $req"
if ! "$py" -c "" 2>/dev/null; then
  # Missing, or its base interpreter is gone (e.g. a removed pyenv version). --clear
  # empties the directory, so only ever on a venv, an empty or a new directory.
  if [[ -d "$env_dir" && ! -f "$env_dir/pyvenv.cfg" && -n "$(ls -A "$env_dir")" ]]; then
    fail "$env_dir exists, is not empty and is not a venv; refusing to create one there"
  fi
  python3 -m venv --clear "$env_dir" || fail "python3 -m venv $env_dir failed"
fi
rm -f "$stamp"

pip_args=(install --quiet --disable-pip-version-check -r "$req")
if [[ -n "$torch_index" ]]; then
  if "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
      "$torch_index/torch/" 2>/dev/null; then
    pip_args+=(--extra-index-url "$torch_index")
  else
    echo "setup_oracle_env: $torch_index unreachable; pip takes torch from its own" \
      "indexes (on PyPI's Linux index that is the multi-GB CUDA build)" >&2
  fi
fi
"$py" -m pip "${pip_args[@]}" || fail "pip install -r $req failed (see pip's output above)"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req_nodeps" \
  || fail "pip install --no-deps -r $req_nodeps failed (see pip's output above)"
check_pins || fail "after pip install, $env_dir does not match $req and $req_nodeps"

echo "$want" > "$stamp"
echo "setup_oracle_env: $env_dir ready in $((SECONDS - start)) s" \
  "($("$py" -c 'import torch; print("torch", torch.__version__)'))"
