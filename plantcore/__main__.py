import sys

from plantcore.cli import main

sys.exit(main())
