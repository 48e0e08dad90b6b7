#!/usr/bin/env bash
# Quickstart command 1: run example DAG 1 end to end against the local OES simulator.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec python scripts/demo.py "$@"
