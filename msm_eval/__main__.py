"""`python -m msm_eval` runs the `msm-eval` command line."""

import sys

from msm_eval.cli import main

sys.exit(main())
