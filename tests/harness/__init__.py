"""Test harnesses that start real Airflow components as separate processes."""
