"""DAG-parse cost: time to import the sensor and operator modules after ``import airflow.sdk``.

Each sample is a fresh Python process that first imports ``airflow.sdk`` (every DAG file pays that),
then times the import of the modules under test. The median over several processes is printed, next to
the same figure for Airflow's HTTP provider sensor module when it is installed. Target: <= 20 ms.

A second figure starts from what Airflow's DAG processor has already imported when it parses a DAG file
(``airflow.dag_processing.processor``): there, modules such as ``airflow.triggers.base`` (which the sensor's
``start_from_trigger`` support needs, about 12 ms on its own after ``airflow.sdk``) are loaded already.

Run: ``python bench/bench_import.py [--runs 11]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

_PROBE = """
import time, importlib, {prelude}
start = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
print(time.perf_counter() - start)
"""

OES_MODULES = ["airflow_provider_oes.sensors.allocation", "airflow_provider_oes.operators.allocation"]
HTTP_MODULES = ["airflow.providers.http.sensors.http"]


SDK = "airflow.sdk"
DAG_PROCESSOR = "airflow.dag_processing.processor"


def _median_ms(modules: list[str], runs: int, prelude: str = SDK) -> float | None:
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", _PROBE.format(modules=modules, prelude=prelude)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return None
        samples.append(float(result.stdout.strip().splitlines()[-1]) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    oes = _median_ms(OES_MODULES, args.runs)
    http = _median_ms(HTTP_MODULES, args.runs)
    in_processor = _median_ms(OES_MODULES, args.runs, prelude=DAG_PROCESSOR)
    assert oes is not None, "the OES modules failed to import"
    print(f"fresh processes per figure: {args.runs} (median)")
    print(f"OES sensor + operator modules : {oes:7.2f} ms   (target <= 20 ms: {'met' if oes <= 20 else 'NOT met'})")
    if http is None:
        print("HTTP provider sensor module   :   not installed")
    else:
        print(f"HTTP provider sensor module   : {http:7.2f} ms   (ratio OES / HTTP: {oes / http:.2f})")
    if in_processor is not None:
        print(f"OES modules, in a DAG processor: {in_processor:6.2f} ms   (after {DAG_PROCESSOR})")


if __name__ == "__main__":
    main()
