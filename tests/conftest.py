"""Test-wide settings: everything offline, caches and logs kept out of the working tree."""

from __future__ import annotations

import os
import tempfile

# Offline: no hub access from transformers / huggingface_hub, ever.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# inspect's response cache must not leak scripted answers between tests.
os.environ.setdefault("INSPECT_CACHE_DIR", tempfile.mkdtemp(prefix="msm-inspect-cache-"))
os.environ.setdefault("INSPECT_LOG_DIR", tempfile.mkdtemp(prefix="msm-inspect-logs-"))
