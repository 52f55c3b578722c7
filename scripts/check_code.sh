#!/usr/bin/env bash
# The code checks, exactly as CI runs them: ruff (lint and import order), mypy and import-linter (the layer
# contracts). Configuration: pyproject.toml; the rules they enforce: docs/architecture.md.
#
#   scripts/check_code.sh                 # all three, from any folder; exit 1 if any fails
#   scripts/check_code.sh mypy imports    # some of them (ruff, mypy, imports)
#
# Needs the dev extra: pip install -e '.[dev]'. PYTHON picks the interpreter (default <repo>/.venv/bin/python).
# Each is also the plain command run at the repository root: `ruff check`, `mypy -p payops`, `lint-imports`.
#
# pyproject.toml maps the top-level folders to subpackages (package-dir: payops.graph is graph/, ...). Tools
# that walk a package on disk (mypy, import-linter's grimp) see that mapping through the links payops/graph ->
# ../graph, ... (docs/architecture.md, "Checks"); the installed package is built from package-dir, not from the links.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(ruff mypy imports)

failed=()
for check in "${checks[@]}"; do
  echo "== $check" >&2
  case "$check" in
    ruff)
      (cd "$repo" && "$python" -m ruff check --no-fix .) || failed+=(ruff)
      ;;
    mypy)
      (cd "$repo" && "$python" -m mypy -p payops) || failed+=(mypy)
      ;;
    imports)
      # lint-imports puts the working directory first on sys.path: run at the root, it reads this checkout.
      (cd "$repo" && "$python" -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())' \
         --no-cache) || failed+=(imports)
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
