"""``python -m airflow_provider_oes.testing.simulator``: see :func:`.cli.main`."""

import sys

from airflow_provider_oes.testing.simulator.cli import main

sys.exit(main())
