#!/usr/bin/env bash
# The test command: Docker, pgha-lab with its test dependencies in .venv, then every test: unit
# tests, image tests and the real-cluster tests (the suite runs its own lab). Arguments go to pytest.
source "$(dirname "$0")/venv.sh" test
set +e
# --durations: the slowest tests, to keep the run under its 40-minute budget.
.venv/bin/python -m pytest -ra --durations=25 "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
if [ "$rc" -eq 5 ]; then
  echo "test.sh: no test ran; that is a failure." >&2
  exit 1
fi
exit "$rc"
