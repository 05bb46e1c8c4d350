"""Write a learning curve, one entry every 0.2 s for 8 steps: loss = (1 + x*x) / step, so a larger |x| is worse."""

import json
import os
import time

with open("config.json") as handle:
    config = json.load(handle)
x = float(config.get("x", 0.0))
path = os.path.join(os.environ.get("RESULT_DIR") or ".", "val_dict_list.json")
entries = []
for step in range(1, 9):
    time.sleep(0.2)
    entries.append({"steps": step, "loss": (1.0 + x * x) / step})
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(entries, handle)
    os.replace(tmp, path)
    print(f"step {step} loss {entries[-1]['loss']:.4f}", flush=True)
