import sys

from marginface.cli import main

sys.exit(main())
