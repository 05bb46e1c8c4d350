"""Write a val_dict_list.json that is not valid JSON (a list cut off mid-entry), and exit 0."""

import json
import os

# Read config.json as every trial does, so a worker that did not write it fails here.
with open("config.json") as f:
    json.load(f)
result_dir = os.environ.get("RESULT_DIR") or "."
with open(os.path.join(result_dir, "val_dict_list.json"), "w") as f:
    f.write('[{"steps": 1, "loss": ')
