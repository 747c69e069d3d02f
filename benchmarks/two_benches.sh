# Sourced by the table scripts: `two ARGS...` runs the same `noveltykit bench ARGS` in two
# processes, one thread each, on one output folder (they share its cells: each runs what the
# other has not claimed); returns the exit status of the worse one.
NK=${NK:-.venv/bin/noveltykit}

two_of() {  # two_of SUBCOMMAND ARGS... : the same for any resumable subcommand (bench, sweep)
  OMP_NUM_THREADS=1 "$NK" "$@" --quiet & a=$!
  OMP_NUM_THREADS=1 "$NK" "$@" --quiet; rb=$?
  wait $a; ra=$?
  return $(( ra > rb ? ra : rb ))
}

two() { two_of bench "$@"; }

run_stages() {  # run_stages STAGE... : each through `stage`, timed; the worst exit status
  local status=0
  for one in "$@"; do
    echo "== $one ($(date -u +%H:%M:%S))"
    stage "$one" || status=$?
  done
  return $status
}
