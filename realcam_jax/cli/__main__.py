"""`python -m realcam_jax.cli ...` == `realcam ...`."""

import sys

from realcam_jax.cli import main

sys.exit(main())
