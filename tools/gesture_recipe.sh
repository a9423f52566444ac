#!/usr/bin/env bash
# The gesture default model's recipe, in one place: cross-validation, the diversity ablation and
# the shipped training all use RECIPE. Every step is resumable: run the same line again after a
# stop and it continues from the last per-epoch checkpoint (finished tasks are skipped).
#
#   bash tools/gesture_recipe.sh cv        # 4 folds x (ST-MANet, plain backbone)   -> runs/cv/main
#   bash tools/gesture_recipe.sh ablation  # 4 folds x ST-MANet without L_s, L_t     -> runs/cv/nodiv
#   bash tools/gesture_recipe.sh rgb       # 4 folds x ST-MANet on RGB, not frame differences -> runs/cv/rgb
#   bash tools/gesture_recipe.sh tta       # the cv runs evaluated with 8 test clips  -> runs/cv/main_tta8
#   bash tools/gesture_recipe.sh familiar  # familiarity calibration on the cv folds  -> docs/eval/familiarity_cv_*.json
#   bash tools/gesture_recipe.sh ship      # both models on all 8 subjects          -> runs/ship
#   bash tools/gesture_recipe.sh card      # checkpoints/ from runs/ship + the tables (8 test clips, familiarity)
#   EPOCHS=30 bash tools/gesture_recipe.sh people  # fold 0 trained on 3 of its 6 people, each half -> runs/people
#   EPOCHS=30 bash tools/gesture_recipe.sh lever NAME FLAGS...  # search step: ST-MANet on folds 0 and 3 with
#                                          # RECIPE + FLAGS (later flags win)               -> runs/search/NAME
#                                          # FOLDS="1 2" adds the other folds to the same table (a finalist)
#
# Two runs side by side on two cores, one thread each (~15 s an epoch each on the 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/gestures}
EPOCHS=${EPOCHS:-50}
RECIPE="--frame-cache cache/gestures --cache-max-side 384 --base-width 16 --stem-temporal-kernel 3 \
  --num-frames 16 --sampling segments --height 64 --width 64 --motion-crop --crop-scale 0.7 1.0 \
  --flip-label-swap left:right --batch-size 16 --optimizer adamw --lr 0.002 --weight-decay 0.05 \
  --lr-schedule cosine --warmup-epochs 2 --label-smoothing 0.1 --dropout 0.3 --max-val-windows 2 \
  --num-workers 1 --input-mode grey_diff --diversity-form received --diversity-grid first \
  --diversity-margin 0.8 --lambda-temporal 0 --diversity-warmup-epochs 5 --residual-gamma-init 0.1 \
  --last-spatial-stride 1 --epochs $EPOCHS"
SOURCE="gestures (GESTURE-PROJECT), all 8 subjects"

case "${1:-}" in
  cv)
    python -m core.crossval --gesture-root "$DATA" --out runs/cv/main --models stmanet_r18 r3d18_baseline \
      --jobs 2 -- $RECIPE --val-every 5 --data-source gestures ;;
  ablation)
    python -m core.crossval --gesture-root "$DATA" --out runs/cv/nodiv --models stmanet_r18 \
      --jobs 2 -- $RECIPE --val-every 5 --no-diversity-loss --data-source gestures ;;
  rgb)
    python -m core.crossval --gesture-root "$DATA" --out runs/cv/rgb --models stmanet_r18 \
      --jobs 2 -- $RECIPE --val-every 5 --input-mode rgb --data-source gestures ;;
  tta)
    # evaluation only: the cv runs' last-epoch weights (hard links, no copy), 8 clips per video
    rm -rf runs/cv/main_tta8 && cp -al runs/cv/main runs/cv/main_tta8
    rm -f runs/cv/main_tta8/crossval.* runs/cv/main_tta8/fold*/*/result.json
    OMP_NUM_THREADS=1 python -m core.crossval --gesture-root "$DATA" --out runs/cv/main_tta8 \
      --models stmanet_r18 r3d18_baseline --jobs 2 --eval-windows 8 -- $RECIPE --val-every 5 --data-source gestures ;;
  familiar)
    for model in stmanet_r18 r3d18_baseline; do
      OMP_NUM_THREADS=1 python -m core.familiarity calibrate --cv runs/cv/main --gesture-root "$DATA" --model $model \
        --others ../shared/data/clips --test-clips 8 --out docs/eval/familiarity_cv_$model.json &
    done
    wait ;;
  ship)
    python -m core.data.gestures "$DATA" runs/gesture_lists_all --train-subjects S1 S2 S3 S4 S5 S6 S7 S8 --val-subjects
    LISTS="--data-layout list --data-root $DATA --train-list runs/gesture_lists_all/train.txt \
      --class-list runs/gesture_lists_all/classes.txt --resume --no-show-progress"
    for model in stmanet_r18 r3d18_baseline; do
      OMP_NUM_THREADS=1 python -m core.train $LISTS $RECIPE --model $model --run-dir runs/ship/$model \
        --data-source "$SOURCE" > runs/ship_$model.log 2>&1 &
    done
    wait ;;
  card)
    # the RGB check is optional on the card: it checks the input, and costs four more runs
    RGB=(); [ -f runs/cv/rgb/crossval.json ] && \
      RGB=(--also "Input check on the same folds: RGB instead of frame differences" runs/cv/rgb/crossval.json)
    python tools/ship_default.py --checkpoint runs/ship/stmanet_r18/checkpoint \
      --baseline-checkpoint runs/ship/r3d18_baseline/checkpoint --crossval runs/cv/main_tta8/crossval.json \
      --also "Test-time protocol: 2 clips per video (as validated during training)" runs/cv/main/crossval.json \
      --test-clips 8 --familiarity docs/eval/familiarity_cv_stmanet_r18.json docs/eval/familiarity_cv_r3d18_baseline.json \
      --train-list runs/gesture_lists_all/train.txt --data-root "$DATA" \
      --ablation runs/cv/nodiv/crossval.json --old-eval docs/eval/old_default_s7s8.json \
      "${RGB[@]}" \
      --notes docs/default_model_notes.md --name stmanet-r18-gestures ;;
  people)
    # accuracy against the number of training people: S1, S2 held out (fold 0), half of the others
    for half in "S3 S4 S5" "S6 S7 S8"; do
      name=$(echo $half | tr -d ' ')
      python -m core.data.gestures "$DATA" runs/people/lists_$name --train-subjects $half --val-subjects S1 S2
      OMP_NUM_THREADS=1 python -m core.train --data-layout list --data-root "$DATA" --resume --no-show-progress \
        --train-list runs/people/lists_$name/train.txt --val-list runs/people/lists_$name/val.txt \
        --class-list runs/people/lists_$name/classes.txt $RECIPE --val-every 5 --model stmanet_r18 \
        --run-dir runs/people/$name --data-source gestures > runs/people_$name.log 2>&1 &
    done
    wait ;;
  lever)
    # folds 0 and 3 are the easiest and the hardest: a cheap first look, confirmed on all four folds after
    [ $# -ge 2 ] || { echo "usage: EPOCHS=30 bash $0 lever NAME FLAGS..." >&2; exit 2; }
    name=$2; shift 2
    python -m core.crossval --gesture-root "$DATA" --out runs/search/$name --models stmanet_r18 --fold-ids ${FOLDS:-0 3} \
      --jobs 2 -- $RECIPE --val-every 5 --data-source gestures "$@" ;;
  *)
    sed -n '2,18p' "$0"; exit 2 ;;
esac
