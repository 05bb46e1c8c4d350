"""Write entries that lack the objective key ``loss`` (only ``steps`` and ``accuracy``), and exit 0."""

import json
import os

# Read config.json as every trial does, so a worker that did not write it fails here.
with open("config.json") as f:
    json.load(f)
result_dir = os.environ.get("RESULT_DIR") or "."
with open(os.path.join(result_dir, "val_dict_list.json"), "w") as f:
    json.dump([{"steps": 1, "accuracy": 0.5}, {"steps": 2, "accuracy": 0.6}], f)
