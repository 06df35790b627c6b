"""msm-eval: constitution-adherence evaluation and Model Spec Midtraining on inspect-ai."""

__version__ = "0.1.0"
