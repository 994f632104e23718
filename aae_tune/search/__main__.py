import sys

from aae_tune.search.cli import main

sys.exit(main())
