"""Write a result whose ``loss`` is NaN, Infinity or a string, or an empty list, chosen by ``--kind``."""

import argparse
import json
import os

RESULTS = {
    "nan": [{"steps": 1, "loss": float("nan")}],
    "inf": [{"steps": 1, "loss": float("inf")}],
    "string": [{"steps": 1, "loss": "not a number"}],
    "empty": [],
}

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--kind", choices=sorted(RESULTS), required=True, help="which invalid result to write")
args = parser.parse_args()

# Read config.json as every trial does, so a worker that did not write it fails here.
with open("config.json") as f:
    json.load(f)
result_dir = os.environ.get("RESULT_DIR") or "."
with open(os.path.join(result_dir, "val_dict_list.json"), "w") as f:
    # json.dump writes the non-standard tokens NaN and Infinity, as a careless training script would.
    json.dump(RESULTS[args.kind], f)
