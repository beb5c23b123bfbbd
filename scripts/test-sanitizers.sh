#!/usr/bin/env bash
# The native addon and procsock_reaper under AddressSanitizer + UndefinedBehaviorSanitizer
# (.ci/run runs this after npm test): builds build-asan/procsock_spawn.node and
# build-asan/procsock_reaper (scripts/build-native-asan.mjs), uses them through
# PROCSOCK_NATIVE_PATH and PROCSOCK_REAPER_PATH with the sanitizer runtimes preloaded, and
# runs the native-backend tests of the addon, the containment tests (every contained run
# goes through the sanitized reaper) and the stress tests on them. Any report, from any
# process (the test runner, the scenario and daemon processes, a cloned child before its
# exec), is written under $report_dir and fails the step. Not run here:
# test/channel/spawn-backend.test.ts (it runs both backends, half of it not the addon's,
# and under ASan on a loaded 2-core machine it passed the runner's 120 s per-file limit).
#   detect_leaks=0: V8 and Node keep most of their heap until exit; LeakSanitizer's reports
#     would be theirs, not the addon's.
#   detect_stack_use_after_return=0: a cloned child runs on a stack the addon allocated;
#     ASan's fake stacks would have it call into the runtime (and its TLS) before exec.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CC:-gcc}
node scripts/build-native-asan.mjs
report_dir=$(mktemp -d /tmp/procsock-sanitizers.XXXXXX)
export LD_PRELOAD="$($cc -print-file-name=libasan.so) $($cc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:detect_stack_use_after_return=0:log_path=$report_dir/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$report_dir/ubsan"
export PROCSOCK_NATIVE_PATH="$PWD/build-asan/procsock_spawn.node"
export PROCSOCK_REAPER_PATH="$PWD/build-asan/procsock_reaper"
# Both are built with PROCSOCK_TEST_HOOKS (test/channel/parent-race.test.ts uses them).
export PROCSOCK_TEST_HOOKS=1
export PROCSOCK_SPAWN=native
status=0
node scripts/run-tests.mjs \
  test/channel/channel.test.ts \
  test/channel/containment.test.ts \
  test/channel/cgroup.test.ts \
  test/channel/parent-race.test.ts \
  test/server/cgroup.test.ts \
  test/shell/exit.test.ts \
  test/shell/idle.test.ts \
  test/channel/spawn-environ.test.ts \
  test/channel/spawn-workers.test.ts \
  test/channel/spawn-emfile.test.ts \
  test/server/spawn-failure.test.ts \
  test/channel/pty.test.ts \
  test/client/pty.test.ts \
  test/server/pty.test.ts \
  test/server/native-connections.test.ts \
  test/server/paused-hangup.test.ts \
  test/server/kill-order.test.ts \
  test/server/native-defects.test.ts \
  test/reliability/daemon-fuzz.test.ts || status=$?
unset LD_PRELOAD
if [ -n "$(ls -A "$report_dir")" ]; then
  echo "sanitizer reports:" >&2
  cat "$report_dir"/* >&2
  status=1
fi
rm -rf "$report_dir"
exit "$status"
