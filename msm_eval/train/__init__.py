"""Model Spec Midtraining: spec decomposition, synthetic documents, demonstrations, and a compact trainer."""
