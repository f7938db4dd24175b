#!/usr/bin/env bash
# The test command, in phases so a broken unit fails the run in its first minute and the labs' long
# waits overlap:
#   1. unit   the pure tests, before anything is installed on the host (only .venv), on every core
#   2. images Docker and Chromium on the host, the node images built once, the image tests
#   3. labs   the real-cluster and browser tests on PGHA_TEST_WORKERS labs at once (pytest-xdist,
#             one lab slot a worker: project, subnet, published ports, labs/ and certs/ folders, disks)
#   4. serial the tests that measure a timing target load would distort, or retag a shared image,
#             with no other lab alive (marker `serial`)
# Every phase prints every test's duration and a one-line total. Arguments go to pytest and run
# one pytest over them instead of the phases (e.g. `bash scripts/test.sh tests/lab/test_chaos.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${PGHA_TEST_WORKERS:-4}
started=$SECONDS
failed=()

venv() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
}

# pytest's 5 means no test ran: that is a failure here, never a pass.
phase() {
  local name=$1; shift
  local t0=$SECONDS rc=0
  echo "== phase $name: $*"
  # Every lab test's duration (setup and teardown apart); of the unit tests, those over half a second.
  local shortest=0
  [ "$name" = unit ] && shortest=0.5
  .venv/bin/python -m pytest -ra --durations=0 --durations-min="$shortest" \
    --junitxml="tests/artifacts/junit-$name.xml" "$@" || rc=$?
  [ "$rc" -eq 5 ] && echo "test.sh: phase $name ran no test; that is a failure." >&2
  echo "== phase $name: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (pytest exit $rc)") in $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
  return 0
}

mkdir -p tests/artifacts
if [ "$#" -gt 0 ]; then
  bash scripts/setup-host.sh --tests
  venv
  phase custom "$@"
else
  venv
  phase unit -n auto tests/unit
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "test.sh: the unit tests failed; the lab phases do not run." >&2
    exit 1
  fi
  bash scripts/setup-host.sh --tests
  t0=$SECONDS
  .venv/bin/python -m tests.labkit   # the images built once, no test lab of an earlier run left
  echo "== images built or found up to date, leftover test labs removed, in $((SECONDS - t0)) s"
  phase images tests/images
  # The bare lab's chain (xdist_group "bare": one lab built on step by step) is the longest unit a
  # worker gets: collected first, it starts at once instead of last.
  phase labs -n "$workers" --dist loadgroup -m "not serial" tests/bare tests/docker tests/lab tests/web
  .venv/bin/python -m tests.labkit   # no lab of the parallel phase left alive
  phase serial -m serial tests/lab tests/bare tests/web
  # The small disks of the fill-disk tests are loop devices: the kernel starts with a few, losetup -f
  # makes more on demand; CI's log says how many this run ended with.
  echo "== loop devices: $(ls /dev/loop[0-9]* 2>/dev/null | wc -l) on the host, $(losetup -a | wc -l) still attached"
fi
echo "test.sh: $((SECONDS - started)) s in all; $([ "${#failed[@]}" -eq 0 ] && echo "every phase passed" || echo "failed: ${failed[*]}")"
[ "${#failed[@]}" -eq 0 ]
