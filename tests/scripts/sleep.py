"""Write an intermediate result, sleep ``--seconds``, then write the final result (to kill a worker mid-trial).

The intermediate entry has loss ``score + 1`` and the final one loss ``score``, where ``score`` is the sum of the
squared numeric config values, as in ok.py.
"""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seconds", type=float, default=30.0, help="how long to sleep between the two writes, in seconds")
args = parser.parse_args()

with open("config.json") as f:
    config = json.load(f)
score = float(sum(v * v for v in config.values() if isinstance(v, (int, float)) and not isinstance(v, bool)))
path = os.path.join(os.environ.get("RESULT_DIR") or ".", "val_dict_list.json")


def write(entries):
    # Replace atomically, because the coordinator may read the file while this script sleeps.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(entries, f)
    os.replace(tmp, path)


first = {"steps": 1, "loss": score + 1.0}
write([first])
print(f"wrote the intermediate result, sleeping {args.seconds}s", flush=True)
time.sleep(args.seconds)
write([first, {"steps": 2, "loss": score}])
print("wrote the final result", flush=True)
