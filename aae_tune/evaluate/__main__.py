import sys

from aae_tune.evaluate.cli import main

sys.exit(main())
