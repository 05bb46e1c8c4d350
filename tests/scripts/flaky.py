"""Fail with exit code 3 when config "opt" is "sgd"; otherwise write the loss like ok.py."""

import json
import os
import sys

with open("config.json") as handle:
    config = json.load(handle)
if config.get("opt") == "sgd":
    print("sgd is not supported by this script", file=sys.stderr)
    sys.exit(3)
loss = sum(float(v) ** 2 for v in config.values() if isinstance(v, (int, float)) and not isinstance(v, bool))
with open(os.path.join(os.environ.get("RESULT_DIR", "."), "val_dict_list.json"), "w") as handle:
    json.dump([{"steps": 1, "loss": loss}], handle)
