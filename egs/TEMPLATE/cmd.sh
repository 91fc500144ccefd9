# Job launchers of this recipe: the shared ones (recipes/cmd.sh). Edit after the source
# line to adapt them, e.g. train_cmd="$train_cmd --partition gpu --mem 64G".
. ../../recipes/cmd.sh
