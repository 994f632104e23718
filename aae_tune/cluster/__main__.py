import sys

from aae_tune.cluster.cli import main

sys.exit(main())
