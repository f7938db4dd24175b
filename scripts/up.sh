#!/usr/bin/env bash
# One command from a fresh clone to a healthy lab: Docker, pgha-lab in .venv, then `pgha-lab up`.
# Arguments go to `pgha-lab up` (e.g. --profile fast). Afterwards use .venv/bin/pgha-lab.
source "$(dirname "$0")/venv.sh" ""
exec .venv/bin/pgha-lab up "$@"
