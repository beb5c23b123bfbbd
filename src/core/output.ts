/**
 * What a running program produces, whatever carries it: output chunks, then one exit
 * status. These types sit below everything else (the wire protocol encodes them, a local
 * child produces them), so the local channel does not depend on the wire format.
 */

export type OutputType = 'stdout' | 'stderr' | 'unknown';

export interface OutputChunk {
  readonly type: OutputType;
  readonly data: Buffer;
}

/** How a program ended: exactly one of the two is set. */
export type ExitStatus =
  | { readonly exitCode: number; readonly termSignal: null }
  | { readonly exitCode: null; readonly termSignal: string };

export function exitedWith(exitCode: number): ExitStatus {
  return { exitCode, termSignal: null };
}

/** `termSignal` is the name without `SIG` (`TERM`, `KILL`), as the wire carries it. */
export function killedBy(termSignal: string): ExitStatus {
  return { exitCode: null, termSignal };
}
