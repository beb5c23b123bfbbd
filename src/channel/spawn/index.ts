/** Picks the spawn backend: the `spawnBackend` option, else `PROCSOCK_SPAWN`, else `auto`. */
import { ArgumentError } from '../../errors.js';
import { addonAvailable, addonLoadError } from '../../native/addon.js';
import {
  SPAWN_BACKEND_CHOICES,
  type SpawnBackend,
  type SpawnBackendChoice,
  type SpawnBackendName,
} from './backend.js';
import { childProcessBackend } from './child-process.js';
import { nativeBackend } from './native.js';

export type {
  ChildOutput,
  SpawnBackend,
  SpawnBackendChoice,
  SpawnBackendName,
  SpawnedChild,
  SpawnLimits,
  SpawnRequest,
} from './backend.js';
export { asSpawnError, isSpawnFailure } from './backend.js';

/**
 * The backend a choice resolves to. Throws `ArgumentError` for an unknown choice, or for
 * `native` when the addon is not built (so a forced backend never silently changes).
 */
export function resolveSpawnBackend(
  choice: SpawnBackendChoice | undefined = undefined,
): SpawnBackend {
  const wanted = choice ?? (process.env.PROCSOCK_SPAWN || 'auto');
  if (!SPAWN_BACKEND_CHOICES.includes(wanted as SpawnBackendChoice)) {
    throw new ArgumentError(
      `unknown spawn backend ${JSON.stringify(wanted)} (PROCSOCK_SPAWN or spawnBackend): ` +
        `use ${SPAWN_BACKEND_CHOICES.join(', ')}`,
    );
  }
  if (wanted === 'child_process') return childProcessBackend;
  if (addonAvailable()) return nativeBackend;
  if (wanted === 'auto') return childProcessBackend;
  throw new ArgumentError(
    `the native spawn backend was asked for, but ${addonLoadError()?.message ?? 'it did not load'}; or use spawnBackend "auto"`,
  );
}

/** Which backend `LocalChannel` uses for this choice (default: PROCSOCK_SPAWN, else auto). */
export function spawnBackendInUse(choice?: SpawnBackendChoice): SpawnBackendName {
  return resolveSpawnBackend(choice).name;
}
