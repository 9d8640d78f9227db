import sys

from loadtest.scenarios import main

sys.exit(main())
