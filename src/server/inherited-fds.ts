/**
 * Descriptors a process inherited from whoever started it (a shell, a supervisor, a CI
 * harness) stay open across exec unless they are close-on-exec, so every program the
 * daemon starts would inherit them too. Everything Node opens itself is close-on-exec;
 * what is not, beyond stdin/stdout/stderr, was inherited. The `procsock serve` command
 * closes those at start-up (a library must not: `serve()` leaves its host process alone).
 */
import { closeSync, readdirSync, readFileSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

/** Descriptors ≥ 3 of this process without close-on-exec (Linux, from /proc/self/fdinfo). */
export function inheritableDescriptors(): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd < 3) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
    } catch {
      continue; // Closed meanwhile (the directory listing's own descriptor).
    }
    const flags = /^flags:\s+([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (Number.parseInt(flags, 8) & O_CLOEXEC) === 0) found.push(fd);
  }
  return found;
}

/** Closes the descriptors `inheritableDescriptors()` finds; returns them. */
export function closeInheritedDescriptors(): number[] {
  const closed: number[] = [];
  for (const fd of inheritableDescriptors()) {
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // Already closed.
    }
  }
  return closed;
}
