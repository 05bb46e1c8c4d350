"""Print an error to stderr and exit with status 3 without writing a result."""

import json
import sys

# Read config.json as every trial does, so a worker that did not write it fails here.
with open("config.json") as f:
    json.load(f)
print("exit_nonzero.py: failing on purpose with exit status 3", file=sys.stderr)
sys.exit(3)
