/**
 * Which environment a program gets. By default the daemon's whole environment, as sockexec
 * does; a policy can pass none of it, or only listed variables, and set others.
 */

export interface EnvironmentRule {
  /** `'all'` (default), `'none'`, or the names of the variables to pass through. */
  pass: 'all' | 'none' | readonly string[];
  /** Variables to set (after `pass`), e.g. a fixed PATH. */
  set: Readonly<Record<string, string>>;
}

export function buildEnvironment(
  base: NodeJS.ProcessEnv,
  rule: EnvironmentRule,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (rule.pass === 'all') {
    for (const [name, value] of Object.entries(base)) if (value !== undefined) env[name] = value;
  } else if (rule.pass !== 'none') {
    for (const name of rule.pass) {
      const value = base[name];
      if (value !== undefined) env[name] = value;
    }
  }
  return Object.assign(env, rule.set);
}
