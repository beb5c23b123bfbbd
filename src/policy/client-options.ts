/**
 * What a client may choose for its own run through the protocol extension: its working
 * directory and environment variables. An open daemon (no policy at all) lets clients set
 * both — whoever can connect to it can already run `sh -c 'cd …; FOO=… prog'` — while any
 * restriction (an allow-list, an environment rule, a fixed cwd, an identity, rlimits)
 * makes the default `'none'`: `LD_PRELOAD` or a `cwd` would otherwise walk around it.
 * The operator opens exactly what is meant to be open.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, sep } from 'node:path';

/** `'all'`, `'none'`, or a list: variable names for env, directories (and below) for cwd. */
export type ClientRule = 'all' | 'none' | readonly string[];

export interface ClientOptionRules {
  env: ClientRule;
  cwd: ClientRule;
}

/** Throws unless every entry can be an environment variable's name (no `=`, NUL or white space). */
export function checkVariableNames(names: readonly string[], what: string): void {
  for (const name of names) {
    if (/[=\0\s]/.test(name)) {
      throw new Error(`${what}: ${JSON.stringify(name)} is not a variable name`);
    }
  }
}

/** Validates a rule at start-up; directories of a cwd rule become real paths ending in `/`. */
export function resolveClientRule(rule: ClientRule, what: 'clientEnv' | 'clientCwd'): ClientRule {
  if (rule === 'all' || rule === 'none') return rule;
  if (!Array.isArray(rule) || rule.some((entry) => typeof entry !== 'string' || entry === '')) {
    throw new Error(`${what} must be 'all', 'none' or a list of non-empty strings`);
  }
  if (what === 'clientEnv') {
    checkVariableNames(rule, 'clientEnv');
    return [...rule];
  }
  return rule.map((dir) => {
    if (!isAbsolute(dir))
      throw new Error(`clientCwd entry ${JSON.stringify(dir)} must be absolute`);
    let real: string;
    try {
      real = realpathSync(dir);
    } catch (error) {
      throw new Error(
        `clientCwd entry ${dir} does not exist (${(error as NodeJS.ErrnoException).code})`,
      );
    }
    return real.endsWith(sep) ? real : real + sep;
  });
}

/** The variable names a client asked for that the rule does not let it set (empty: all may be set). */
export function refusedEnvNames(names: readonly string[], rule: ClientRule): string[] {
  if (rule === 'all') return [];
  if (rule === 'none') return [...names];
  return names.filter((name) => !rule.includes(name));
}

export type CwdDecision =
  /** `path`: where the program runs — the real path that was checked, when a list applies. */
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly byPolicy: boolean; readonly reason: string };

/**
 * Whether a client's cwd may be used: it must be an existing directory and, with a list,
 * its real path must be one of the directories or below one.
 */
export function checkClientCwd(cwd: string, rule: ClientRule): CwdDecision {
  if (rule === 'none') {
    return {
      ok: false,
      byPolicy: true,
      reason:
        'clients may not choose the working directory (its operator can allow it: procsock serve --client-cwd DIR,…)',
    };
  }
  let real: string;
  try {
    real = realpathSync(cwd);
    if (!statSync(real).isDirectory()) {
      return { ok: false, byPolicy: false, reason: 'not a directory' };
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      ok: false,
      byPolicy: false,
      reason: code === 'ENOENT' ? 'no such directory' : `cannot use it (${code})`,
    };
  }
  if (rule === 'all') return { ok: true, path: cwd };
  const withSlash = real.endsWith(sep) ? real : real + sep;
  return rule.some((dir) => withSlash.startsWith(dir))
    ? { ok: true, path: real }
    : {
        ok: false,
        byPolicy: true,
        reason:
          'outside the directories clients may choose (procsock serve --client-cwd names them)',
      };
}
