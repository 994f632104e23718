import sys

from aae_tune.cli import main

sys.exit(main())
