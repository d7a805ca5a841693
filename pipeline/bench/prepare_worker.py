"""Child process for benchmark 3: prepare a folder dataset; prints images and seconds as JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from pipeline.data.prepare import prepare
from pipeline.params import FolderDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ds = FolderDataset(
        source="folder",
        path=str(args.root),
        image_size=args.size,
        channels=3,
        resize="stretch",
        classes=None,
        val_fraction=0.15,
        test_fraction=0.15,
    )
    start = time.perf_counter()
    manifest = prepare("bench", ds, 42, args.out, progress=False)
    seconds = time.perf_counter() - start
    images = sum(sum(c.values()) for c in manifest["counts"].values())
    shutil.rmtree(args.out)
    print(json.dumps({"images": images, "seconds": seconds}))


if __name__ == "__main__":
    main()
