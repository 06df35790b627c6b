"""inspect-ai model providers of the project: `msm/mock` (scripted) and `msm/smollm2` (embedded)."""
