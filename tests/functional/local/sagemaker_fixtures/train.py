"""Tiny training script in the SageMaker scikit-learn container style (test fixture).

Reads headerless CSV rows (label first) from the ``train`` channel, fits a LogisticRegression, writes
``model.joblib`` and ``code/inference.py`` to SM_MODEL_DIR and ``evaluation.json`` (what the script saw:
arguments, SM_* environment, working directory) to SM_OUTPUT_DATA_DIR. Hyperparameters steer the paths the
tests need: ``fail_with`` writes the reason to ``SM_OUTPUT_DIR/failure`` and exits 1; ``crash`` raises;
``sleep`` saves a partial file, then waits. Heavy imports wait until training, so those paths are fast.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--max_iter", type=int, default=100)
    parser.add_argument("--fail_with", default="")
    parser.add_argument("--crash", default="")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    return parser.parse_args()


def train(args: argparse.Namespace) -> None:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rows = np.vstack([np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted(Path(args.train).glob("*.csv"))])
    labels, features = rows[:, 0].astype(int), rows[:, 1:]
    model = LogisticRegression(C=args.regularization, max_iter=args.max_iter).fit(features, labels)
    accuracy = float(model.score(features, labels))
    print(f"train:accuracy={accuracy:.4f};")
    joblib.dump(model, Path(args.model_dir, "model.joblib"))
    code = Path(args.model_dir, "code")
    code.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("inference.py"), code / "inference.py")
    evaluation = {
        "accuracy": accuracy,
        "argv": sys.argv[1:],
        "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
        "cwd": str(Path.cwd()),
    }
    Path(os.environ["SM_OUTPUT_DATA_DIR"], "evaluation.json").write_text(json.dumps(evaluation))


def main() -> None:
    args = parse_args()
    if args.fail_with:
        Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text(args.fail_with)
        sys.exit(1)
    if args.crash:
        raise RuntimeError(args.crash)
    if args.sleep:
        Path(args.model_dir, "partial.txt").write_text("saved before the stop")
        print("sleeping", flush=True)
        time.sleep(args.sleep)
    train(args)


if __name__ == "__main__":
    main()
