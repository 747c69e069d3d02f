"""python -m noveltykit.cli"""
import sys

from . import main

sys.exit(main())
