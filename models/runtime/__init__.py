"""Building critics and keeping them in memory: checkpoints on disk (offline first), quantisation, the
memory plan, host copies for residency, dependency checks."""
