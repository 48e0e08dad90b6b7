"""The asset watchers' engine: watch loop, window and state store, Airflow 3.3 shared stream."""
