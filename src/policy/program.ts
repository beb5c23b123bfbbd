/**
 * Which programs may run: argv[0] is resolved the way execvp would (through PATH when it
 * has no slash), then every symlink is resolved, and only the real path is checked
 * against the allow-list. The program is then started by that real path, so what was
 * checked is what runs: `../` tricks, symlinks out of an allowed directory and PATH games
 * do not escape.
 */

import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { PolicyError } from '../errors.js';

export interface ProgramRule {
  /** Allowed executables (exact paths) and directories (any executable below them). */
  allow: readonly string[];
}

export type ProgramDecision =
  | { readonly allowed: true; readonly path: string }
  | { readonly allowed: false; readonly reason: string; readonly exitCode: 126 | 127 };

/**
 * An allow-list with every entry resolved to its real path once, at start-up, so a later
 * symlink swap of an entry changes nothing.
 */
export class ProgramAllowList {
  readonly #files = new Set<string>();
  readonly #dirs: string[] = [];

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      if (!isAbsolute(entry)) {
        throw new PolicyError(`allow-list entry ${JSON.stringify(entry)} must be an absolute path`);
      }
      let real: string;
      try {
        real = realpathSync(entry);
      } catch (error) {
        throw new PolicyError(
          `allow-list entry ${entry} does not exist (${(error as NodeJS.ErrnoException).code})`,
        );
      }
      if (statSync(real).isDirectory()) this.#dirs.push(real.endsWith(sep) ? real : real + sep);
      else this.#files.add(real);
    }
  }

  /** True when the (already real) path is an allowed file or lies below an allowed directory. */
  permits(realPath: string): boolean {
    return this.#files.has(realPath) || this.#dirs.some((dir) => realPath.startsWith(dir));
  }
}

/**
 * Finds the file argv[0] names, as execvp would: with a slash, relative to `cwd`;
 * without, the first executable regular file in the PATH directories. Relative and empty
 * PATH entries are skipped: they would make the lookup depend on the working directory.
 */
export function findProgram(name: string, searchPath: string, cwd: string): string | undefined {
  if (name.includes('/')) return resolve(cwd, name);
  for (const dir of searchPath.split(':')) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The reason of the one refusal that is the policy's (the others: the program cannot be found or named). */
export const NOT_ALLOWED =
  'not allowed by the daemon policy (its operator can allow it: procsock serve --allow PATH)';

/** Decides whether argv[0] may run, and by which real path. */
export function checkProgram(
  name: string,
  allowList: ProgramAllowList,
  searchPath: string,
  cwd: string,
): ProgramDecision {
  if (name === '' || name.includes('\0')) {
    return { allowed: false, reason: 'invalid program name', exitCode: 126 };
  }
  const found = findProgram(name, searchPath, cwd);
  if (found === undefined) return { allowed: false, reason: 'command not found', exitCode: 127 };
  let real: string;
  try {
    real = realpathSync(found);
  } catch {
    return { allowed: false, reason: 'command not found', exitCode: 127 };
  }
  if (!allowList.permits(real)) {
    return { allowed: false, reason: NOT_ALLOWED, exitCode: 126 };
  }
  return { allowed: true, path: real };
}
