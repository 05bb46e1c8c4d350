"""Report how the script was started: whether torch was already imported, its name, argv and environment."""

import json
import os
import sys

preloaded = "torch" in sys.modules
with open("config.json") as handle:
    config = json.load(handle)
entry = {
    "loss": 1.0,
    "preloaded": 1.0 if preloaded else 0.0,
    "main": 1.0 if __name__ == "__main__" else 0.0,
    "argv_ok": 1.0 if sys.argv[1:] == ["--flag", "value"] and sys.argv[0].endswith("warm_probe.py") else 0.0,
    "cwd_ok": 1.0 if os.getcwd().startswith(os.environ["RESULT_DIR"]) else 0.0,
    "path_ok": 1.0 if sys.path[0] == os.path.dirname(os.path.abspath(__file__)) else 0.0,
}
print("probe", entry)
print("to stderr", file=sys.stderr)
with open(os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json"), "w") as handle:
    json.dump([entry], handle)
sys.exit(int(config.get("code", 0)))
