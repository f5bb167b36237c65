"""Tiny processing script (test fixture): counts the rows of every CSV under --input into --output."""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
args = parser.parse_args()
rows = sum(len(p.read_text().splitlines()) for p in Path(args.input).glob("*.csv"))
summary = {"rows": rows, "input": args.input, "greeting": os.environ.get("GREETING")}
Path(args.output, "summary.json").write_text(json.dumps(summary))
