"""Benchmarks: Bulwark's gateway against the raw OpenAI SDK, a hand-built tenacity + pybreaker
wrapper and LiteLLM's Router, side by side in one run, every contender against a fresh fake
provider server (its own process) with the same fault schedule and the same settings.

``python -m bench [--quick] [--only 1,2,...] [--out bench/results]``; see ``docs/performance.md``.
"""
