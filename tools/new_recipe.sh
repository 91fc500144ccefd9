#!/usr/bin/env bash
# Make a new dataset's recipe egs/NAME from egs/TEMPLATE (ESPnet's egs2/TEMPLATE setup).
#   tools/new_recipe.sh NAME
# Then edit egs/NAME/local/prepare.py (your corpus's layout) and egs/NAME/conf/*.yaml,
# and run: egs/NAME/run.sh --data_folder DIR --stage 1 --stop_stage 2
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 NAME   (makes egs/NAME from egs/TEMPLATE)" >&2; exit 2
fi
name=$1
case "$name" in
  *[!a-z0-9_]*|"") echo "$0: NAME must be lower-case letters, digits and _ (got '$name')" >&2
                   exit 2 ;;
esac
target=$repo/egs/$name
if [ -e "$target" ]; then echo "$0: $target already exists" >&2; exit 2; fi
mkdir -p "$target"
# the recipe's own files only (no data/ or exp/ a TEMPLATE run may have left)
for item in README.md run.sh cmd.sh conf local; do cp -R "$repo/egs/TEMPLATE/$item" "$target/"; done
find "$target" -type f \( -name '*.sh' -o -name '*.md' -o -name '*.yaml' -o -name '*.py' \) \
  -exec sed -i "s/egs\/TEMPLATE/egs\/$name/g" {} +
sed -i "1s/.*/# egs\/$name — a recipe made from egs\/TEMPLATE by tools\/new_recipe.sh/" "$target/README.md"
chmod +x "$target/run.sh"
echo "made egs/$name. Next:"
echo "  1. adapt egs/$name/local/prepare.py (read_items) to your corpus's layout"
echo "  2. set your dataset's keys in egs/$name/conf/train.yaml and conf/decode.yaml"
echo "  3. egs/$name/run.sh --data_folder DIR --stage 1 --stop_stage 2   # manifests + audio check"
echo "  4. egs/$name/run.sh --data_folder DIR                            # train, decode, score"
