"""Benchmarks: our server against flyte-sdk's connector service, and one process at scale.

Run ``python -m bench`` (see BENCHMARKS.md). Nothing here is imported by the service.
"""
