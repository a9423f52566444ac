"""One PNG per video: the frames the model saw (top row) and each stage's spatial attention over
its middle frame, with this video's concentration and on-motion lift: to look at what a
checkpoint attends to before trusting its numbers.

    python tools/attention_sheet.py --checkpoint checkpoints/stmanet-r18-gestures --out runs/sheets \
        ../shared/data/gestures/S8/greeting_1_1m_upper.avi ../shared/data/gestures/S7/stop_1_4m_full.avi
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.attention_maps import filmstrip, spatial_overlay  # noqa: E402
from core.predict import Predictor  # noqa: E402

TILE = 160


def sheet(predictor: Predictor, video: Path) -> np.ndarray:
    pred = predictor.predict(video, with_attention=True)
    frames = pred.frames  # (T, h, w, 3): the crop the model saw
    middle = frames[len(frames) // 2 : len(frames) // 2 + 1]
    tiles = []
    for stage in pred.attention:
        if stage.spatial is None:
            continue
        overlay = spatial_overlay(middle, stage.spatial[pred.frames_window])[0]
        tile = cv2.resize(overlay, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
        row = (pred.attention_quality or {}).get("spatial", {}).get(f"stage {stage.stage}", {})
        text = f"s{stage.stage} cells {row.get('effective_cells') or 0:.1f} lift {row.get('motion_lift') or 0:.1f}"
        cv2.putText(tile, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    strip = filmstrip(frames, n=len(tiles) * 2 if tiles else 8, height=TILE // 2)
    bottom = np.concatenate(tiles, axis=1) if tiles else np.zeros((TILE, TILE, 3), np.uint8)
    width = max(strip.shape[1], bottom.shape[1])
    pad = lambda img: np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    title = np.full((18, width, 3), 255, np.uint8)
    cv2.putText(title, f"{video.name}: {pred.topk[0][0]} {pred.topk[0][1]:.0%}", (3, 13),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, pad(strip), pad(bottom)], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("videos", nargs="+", type=Path)
    args = parser.parse_args(argv)
    predictor = Predictor(args.checkpoint, threads=1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for video in args.videos:
        path = out / f"{video.parent.name}_{video.stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet(predictor, video), cv2.COLOR_RGB2BGR))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
