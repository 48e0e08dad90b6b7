#!/usr/bin/env bash
# Contributor command 1: run example DAG 1 end to end against the local OES simulator. The terminal shows
# the allocation waited for, each check and what it saw, and the result; Airflow's full log goes to a file
# whose name it prints.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec python scripts/demo.py "$@"
