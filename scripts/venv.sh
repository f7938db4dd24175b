# Sourced by scripts/up.sh and scripts/test.sh: Docker ready, then pgha-lab in ./.venv.
# $1: the pip extra to install ("" or "test").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = test ]; then bash scripts/setup-host.sh --tests; else bash scripts/setup-host.sh; fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extra=${1:-}
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
