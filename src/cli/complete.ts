/**
 * Where one shell command ends, for `procsock shell` reading a script: lines are gathered
 * until they make a complete command — a `for` loop over three lines, a function, a quoted
 * string spanning lines, a here-document with its body — and then sent as one run.
 *
 * bash itself decides (`bash -n`, which parses without running anything), rather than a
 * parser of ours: a shell grammar has too many corners (here-documents, nested `$( )`,
 * `case` patterns, quoting inside them) for a re-implementation to get them all right, and
 * bash is the one shell that says "incomplete" apart from "wrong" — dash and zsh report an
 * open `for` and a stray `)` the same way and accept an unterminated here-document
 * silently. Its grammar covers what sh and dash accept; for zsh-only syntax it answers
 * "wrong", and the line is sent as it is (zsh then parses it). Text bash calls a syntax
 * error is sent at once too, so the shell reports it as that run's error.
 */
import { spawn, spawnSync } from 'node:child_process';

/** What `bash -n` says when input ends before the command does. */
const INCOMPLETE =
  /unexpected end of file|unexpected EOF while looking for matching|here-document at line \d+ delimited by end-of-file/;

let bashAvailable: boolean | null = null;

/** Whether `bash -n` can judge (bash installed here); else each line is a command. */
export function canJudgeCompleteness(): boolean {
  bashAvailable ??= spawnSync('bash', ['-c', 'true']).status === 0;
  return bashAvailable;
}

/**
 * Text that cannot open anything — no quote, bracket, redirection, operator, backslash or
 * compound-command keyword — is complete without asking bash (most lines of most scripts).
 */
const PLAIN = /^[^'"`(){}<>|&\\;$]*$/;
const KEYWORD = /(^|\s)(if|then|else|elif|do|case|for|while|until|select|function|\[\[)(\s|$)/;

/** True when `text` is a whole command (or a syntax error more lines cannot fix). */
export function isCompleteCommand(text: string): Promise<boolean> {
  if (PLAIN.test(text) && !KEYWORD.test(text)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const child = spawn('bash', ['-n'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (data: string) => {
      stderr += data;
    });
    // If bash cannot run after all, judge every line complete (the old line-by-line mode).
    child.on('error', () => resolve(true));
    child.on('close', () => resolve(!INCOMPLETE.test(stderr)));
    child.stdin!.on('error', () => {}); // bash may exit before reading it all
    child.stdin!.end(text);
  });
}
