#!/usr/bin/env bash
# The test command: prepares Docker (scripts/setup-host.sh), a venv with pgha-lab, then runs
# every test: unit tests, image tests and the real-cluster tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

set +e
.venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
if [ "$rc" -eq 5 ]; then
  echo "test.sh: no test ran; that is a failure." >&2
  exit 1
fi
exit "$rc"
