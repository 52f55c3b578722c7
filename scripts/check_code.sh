#!/usr/bin/env bash
# The code checks, exactly as CI runs them: ruff (lint and import order), mypy and import-linter (the layer
# contracts). Configuration: pyproject.toml; the rules they enforce: docs/architecture.md.
#
#   scripts/check_code.sh                 # all three, from any folder; exit 1 if any fails
#   scripts/check_code.sh mypy imports    # some of them (ruff, mypy, imports)
#
# Needs the dev extra: pip install -e '.[dev]'. PYTHON picks the interpreter (default <repo>/.venv/bin/python).
#
# Why a second install: pyproject.toml maps the top-level folders to subpackages (package-dir: payops.graph is
# graph/, ...). An editable install does that mapping with an import hook at run time, which neither mypy nor
# import-linter can see ("Module 'payops.palmpay' does not exist"), and no mypy setting maps a folder to
# another name. So both run against a regular install of the working tree (tracked and new files, built from
# a clean copy so no stale build/ file sneaks in) in $PAYOPS_CHECK_DIR (default <repo>/.check, git-ignored),
# and mypy's paths are written back as the repository's (payops/graph/nodes.py -> graph/nodes.py).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
check_dir=${PAYOPS_CHECK_DIR:-$repo/.check}
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(ruff mypy imports)

install_copy() {
  rm -rf "$check_dir/src" "$check_dir/site"
  mkdir -p "$check_dir/src"
  "$python" - "$repo" "$check_dir/src" <<'EOF'
import shutil, subprocess, sys
from pathlib import Path

repo, dest = Path(sys.argv[1]), Path(sys.argv[2])
listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        check=True, capture_output=True).stdout.decode().split("\0")
for name in filter(None, listed):
    if (repo / name).is_file():  # a file deleted but not yet committed is still listed
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
EOF
  "$python" -m pip install -q --no-deps --target "$check_dir/site" "$check_dir/src" 2>&1 \
    | { grep -v "^WARNING: Target directory" || true; } >&2
}

# mypy reports payops/graph/nodes.py (the installed name); print graph/nodes.py (the file to open).
repo_paths() {
  "$python" -c '
import sys, tomllib
dirs = tomllib.load(open(sys.argv[1], "rb"))["tool"]["setuptools"]["package-dir"]
prefixes = sorted(((pkg.replace(".", "/") + "/", folder.rstrip("/") + "/") for pkg, folder in dirs.items()),
                  key=lambda pair: -len(pair[0]))
for line in sys.stdin:
    for installed, folder in prefixes:
        if line.startswith(installed):
            line = folder + line[len(installed):]
            break
    sys.stdout.write(line)
' "$repo/pyproject.toml"
}

failed=()
installed=""
for check in "${checks[@]}"; do
  echo "== $check" >&2
  case "$check" in
    ruff)
      (cd "$repo" && "$python" -m ruff check --no-fix .) || failed+=(ruff)
      ;;
    mypy|imports)
      [ -n "$installed" ] || { install_copy; installed=1; }
      if [ "$check" = mypy ]; then
        (cd "$check_dir/site" && MYPYPATH="$check_dir/site" "$python" -m mypy --config-file "$repo/pyproject.toml" \
           --python-executable "$python" --cache-dir "$check_dir/mypy_cache" -p payops) | repo_paths \
          || failed+=(mypy)
      else
        (cd "$check_dir/site" && PYTHONPATH="$check_dir/site" "$python" -c \
           'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())' \
           --config "$repo/pyproject.toml" --no-cache) || failed+=(imports)
      fi
      ;;
    *)
      echo "unknown check: $check (ruff, mypy, imports)" >&2
      exit 2
      ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
