"""DVC stage `augment`: the training split enlarged by augmented copies (offline) or as prepared with the
recipe the train stage draws from (online), and a preview grid."""

from __future__ import annotations

import numpy as np

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser


def main() -> None:
    args = parser(__doc__, "datasets", "data", "out", "preview").parse_args()
    params = load_checked()
    spec = params.augment_for(args.name)
    from pipeline import plots
    from pipeline.data import augment
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest

    manifest = read_manifest(args.data)
    segmentation = manifest.get("task") == "segmentation"
    background = manifest.get("background")
    bg = manifest["classes"].index(background) if background is not None else None
    x, y = load_split(args.data, "train")
    if spec.mode == "online":
        with atomic_dir(args.out) as tmp:
            augment.write_online(spec, args.name, params.seed, args.data, tmp, segmentation)
            n = min(spec.preview, len(x))
            shown = augment.online_preview(spec, args.name, params.seed, x, y if segmentation else None, n, 3)
            rows = [plots.mask_overlay(i, m, bg) if segmentation else i for i, m in shown]
            titles = ["original"] + [f"epoch {e + 1}: a fresh view" for e in range(len(rows) - 1)]
            plots.sample_grid(rows, args.preview, titles, title=f"augment {args.name} (online)")
        print(f"augment {args.name}: online, {spec.copies} fresh view(s) per image and epoch (train stage)")
        return
    with atomic_dir(args.out) as tmp:
        aug_x, aug_y = augment.augment_split(
            spec,
            args.name,
            x,
            y,
            params.seed,
            tmp,
            workers=params.runtime.workers,
            progress=True,
            masks=segmentation,
        )
        n = min(spec.preview, len(x))

        def shown(start: int) -> np.ndarray:
            if segmentation:  # each image with its mask overlaid, to see that they moved together
                return plots.mask_overlay(aug_x[start : start + n], aug_y[start : start + n], bg)
            return np.asarray(aug_x[start : start + n])

        rows = [shown(0)]
        titles = ["original"]
        for copy in range(1, min(spec.copies, 3) + 1):
            rows.append(shown(copy * len(x)))
            titles.append(f"augmented copy {copy}")
        plots.sample_grid(rows, args.preview, titles, title=f"augment {args.name}")
    print(f"augment {args.name}: {len(x)} -> {len(aug_x)} training images in {args.out}")


if __name__ == "__main__":
    run_cli(main)
