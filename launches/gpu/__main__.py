"""``python -m launches.gpu --host NAME``: start the GPU worker of one host (needs only REDIS_URL)."""

import sys

from launches.gpu.main import main

sys.exit(main())
