"""Write one result whose loss is the sum of the squared numeric config values, and exit 0."""

import json
import os

with open("config.json") as f:
    config = json.load(f)

# Skip booleans, which Python treats as ints, because a flag is not a number to score.
loss = float(sum(v * v for v in config.values() if isinstance(v, (int, float)) and not isinstance(v, bool)))
result_dir = os.environ.get("RESULT_DIR") or "."
with open(os.path.join(result_dir, "val_dict_list.json"), "w") as f:
    json.dump([{"steps": 1, "loss": loss, "accuracy": 1.0 / (1.0 + loss)}], f)
print(f"loss {loss}")
