import sys

from medllm.cli import main

sys.exit(main())
