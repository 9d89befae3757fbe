"""Test helpers for the BigQuery connector: the emulator, the proxy in front of it, fixtures."""
