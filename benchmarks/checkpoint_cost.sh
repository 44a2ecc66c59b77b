#!/usr/bin/env bash
# Peak resident memory and on-disk size of a run with checkpoints, for DQN on Atari (the replay buffer
# dominates) and SAC on Pendulum, with this checkout and optionally with an older one, side by side.
#   bash benchmarks/checkpoint_cost.sh [OLD_CHECKOUT]
# e.g. git worktree add /tmp/old 6f853a1 && bash benchmarks/checkpoint_cost.sh /tmp/old
# Needs GNU time (/usr/bin/time) and ale-py. Run directories go to a temp dir, removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
old=${1:-}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {  # label checkout args...
  local label=$1 checkout=$2; shift 2
  local dir="$out/$label"
  # from $out: `python -m` puts the working directory first on sys.path, and it must not hold a deeprl/
  (cd "$out" && /usr/bin/time -f "%M" -o "$out/$label.rss" env PYTHONPATH="$checkout" "$py" -m deeprl.cli train "$@" \
    --run-dir "$dir" --progress off > "$out/$label.log" 2>&1) || { echo "$label failed:"; tail -5 "$out/$label.log"; return; }
  local rss_mb=$(( $(tail -1 "$out/$label.rss") / 1024 ))
  local files
  files=$(cd "$dir" && { du -sb checkpoint.pt policy.safetensors resume 2>/dev/null || true; } \
          | awk '{printf "%s %.2f MB  ", $2, $1 / 1e6}')
  printf '| %-28s | %6d MB | %s|\n' "$label" "$rss_mb" "$files"
}

cases=(
  "dqn-pong-100k-buffer|dqn ALE/Pong-v5 --total-steps 500 --checkpoint-every 500 --buffer-size 100000 --eval-episodes 1"
  "dqn-pong-1M-buffer|dqn ALE/Pong-v5 --total-steps 3000 --checkpoint-every 1500 --eval-episodes 1"
  "sac-pendulum|sac Pendulum-v1 --total-steps 20000 --checkpoint-every 10000"
)
echo "| run | peak RSS | files |"
echo "|---|---:|---|"
for case in "${cases[@]}"; do
  label=${case%%|*}; args=${case#*|}
  # shellcheck disable=SC2086
  [ -n "$old" ] && { [ "$label" = dqn-pong-1M-buffer ] || run "before-$label" "$old" $args; }
  # shellcheck disable=SC2086
  run "after-$label" "$here" $args
done
