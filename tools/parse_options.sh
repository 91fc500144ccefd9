#!/usr/bin/env bash
# Turn --name value / --name=value flags into shell variables (ESPnet/Kaldi style).
# Set the defaults, list the option names in _options, then source this file:
#   stage=0 verbose=false
#   _options="stage verbose"
#   . tools/parse_options.sh
# Only the names in _options are accepted (--SHELL x, --PATH x or a script's internal
# variables are refused); --help prints them with their defaults.
# As in Kaldi, a value must keep its default's type: an option whose default is an
# integer takes only integers, one whose default is true/false only true or false.
# Anything that is not an --option (a stray word such as "stage4") is refused.
_help=false
# the command as typed (recipes/stages.sh records it for RESULTS.md)
mowe_command_line=$0
[ $# -eq 0 ] || mowe_command_line+=$(printf ' %q' "$@")
if [ -z "${_options+x}" ]; then
  echo "$0: parse_options.sh: the script declares no _options (the names it accepts)" >&2
  exit 2
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _help=true; shift; continue ;;
    --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
    --*) _name=$1; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }
         _value=$2; shift 2 ;;
    *) break ;;
  esac
  _name=${_name#--}; _name=${_name//-/_}
  case " $(echo $_options) " in
    *" $_name "*) ;;
    *) echo "$0: unknown option --$_name (see --help)" >&2; exit 2 ;;
  esac
  if ! declare -p "$_name" >/dev/null 2>&1; then
    echo "$0: option --$_name is declared in _options but has no default" >&2; exit 2
  fi
  case "${!_name}" in
    true|false)
      case "$_value" in true|false) ;; *)
        echo "$0: --$_name takes true or false, not '$_value'" >&2; exit 2 ;; esac ;;
    *[!0-9]*|"") ;;
    *)
      case "$_value" in ''|*[!0-9]*)
        echo "$0: --$_name takes a whole number, not '$_value'" >&2; exit 2 ;; esac ;;
  esac
  printf -v "$_name" '%s' "$_value"
done
if [ $# -gt 0 ]; then
  echo "$0: unexpected argument '$1': options are --name value or --name=value (see --help)" >&2
  exit 2
fi
if $_help; then
  echo "Usage: $0 [options]"
  for _name in $_options; do printf '  --%-14s (default: %s)\n' "$_name" "${!_name}"; done
  exit 0
fi
unset _help _name _value
