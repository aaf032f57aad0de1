"""Spooled benchmark suite: baselines and (later) Spooled itself. Run: python -m benchmarks.run"""
