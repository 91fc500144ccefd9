# Job launchers (ESPnet-style): every stage calls "$train_cmd LOG command..." or
# "$decode_cmd LOG command...". --cmd local runs here; other launchers plug in here.
case "${cmd:-local}" in
  local) train_cmd="$tools_dir/launch.sh"; decode_cmd="$tools_dir/launch.sh" ;;
  *) echo "cmd.sh: unknown --cmd $cmd (available: local)" >&2; exit 2 ;;
esac
