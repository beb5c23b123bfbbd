/**
 * `procsock doctor`: what this installation runs on — Node, platform, libc, and which spawn
 * backend is in use, loaded from which file, or why the native one is not. Exit 0 when
 * programs are spawned natively, 1 when procsock fell back to child_process (or was told
 * to), so a deployment script can insist on the fast path.
 */
import { delegatedCgroup } from '../channel/cgroup.js';
import { REAPER_MISSING, reaperPath } from '../channel/contain.js';
import { spawnBackendInUse } from '../channel/spawn/index.js';
import {
  addonAvailable,
  addonExitWatch,
  addonReport,
  cgroupDelegated,
  nativeUnavailableReason,
  runtimeLibc,
} from '../native/addon.js';
import { parseCommandLine, UsageError } from './usage.js';

const USAGE = 'usage: procsock doctor';

/** One line: the backend in use and where it came from (also `procsock --version`'s). */
export function backendLine(): string {
  let backend: string;
  try {
    backend = spawnBackendInUse();
  } catch (error) {
    return `spawn backend: none (${(error as Error).message})`;
  }
  const loaded = addonReport()?.loaded;
  if (backend === 'native' && loaded) {
    const from = loaded.origin === 'prebuilt' ? 'prebuilt' : loaded.origin;
    return `spawn backend: native (${from}: ${loaded.path})`;
  }
  if (loaded) {
    return `spawn backend: child_process (chosen by PROCSOCK_SPAWN; the native addon would load from ${loaded.path})`;
  }
  return `spawn backend: child_process (${nativeUnavailableReason()})`;
}

export async function main(args: string[], version: string): Promise<number> {
  const parsed = parseCommandLine('doctor', USAGE, () => {
    if (args.length === 1 && (args[0] === '-h' || args[0] === '--help')) return 'help';
    if (args.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args[0])}`);
    return 'report';
  });
  if (typeof parsed === 'number') return parsed;
  if (parsed === 'help') {
    process.stdout.write(
      `${USAGE}\n\nPrints the Node version, platform and libc, and which spawn backend procsock\nuses (native: from which file; child_process: why). Exit 0 when spawning is native, 1 when not.\n`,
    );
    return 0;
  }
  // Tried even when child_process is chosen, so the report says whether native would load.
  addonAvailable();
  const line = backendLine();
  const report = addonReport();
  const lines = [
    `procsock ${version}`,
    `node ${process.version}, ${process.platform}-${process.arch}, ${report?.libc ?? runtimeLibc()}`,
    line,
  ];
  for (const { candidate, error } of report?.tried ?? []) {
    lines.push(`  ${candidate.origin}: ${candidate.path}: ${error ?? 'loaded'}`);
  }
  if (line.startsWith('spawn backend: native')) lines.push(`exit watch: ${addonExitWatch()}`);
  const reaper = reaperPath();
  lines.push(
    `containment: ${reaper === null ? `none (${REAPER_MISSING})` : `procsock_reaper (${reaper})`}`,
  );
  const cgroup = reaper === null ? null : delegatedCgroup(cgroupDelegated);
  lines.push(
    `cgroup per run (serve --cgroup auto): ${cgroup ?? "none (this process's cgroup was not delegated to it)"}`,
  );
  for (const name of ['PROCSOCK_SPAWN', 'PROCSOCK_NATIVE_PATH', 'PROCSOCK_REAPER_PATH']) {
    lines.push(`${name}=${process.env[name] || '(unset)'}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return line.startsWith('spawn backend: native') ? 0 : 1;
}
