import sys

from pgha_lab.cli import main

sys.exit(main())
