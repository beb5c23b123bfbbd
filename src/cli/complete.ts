/**
 * Where one command ends, for `procsock shell` reading a script: lines are gathered until
 * they make a complete command — a `for` loop over three lines, a function, a quoted string
 * spanning lines, a here-document with its body; a Python block, a JavaScript function —
 * and then sent as one run (`gatherer()` at the end: one per preset).
 *
 * POSIX shells: bash itself decides (`bash -n`, which parses without running anything), rather than a
 * parser of ours: a shell grammar has too many corners (here-documents, nested `$( )`,
 * `case` patterns, quoting inside them) for a re-implementation to get them all right, and
 * bash is the one shell that says "incomplete" apart from "wrong" — dash and zsh report an
 * open `for` and a stray `)` the same way and accept an unterminated here-document
 * silently. Its grammar covers what sh and dash accept; for zsh-only syntax it answers
 * "wrong", and the line is sent as it is (zsh then parses it). Text bash calls a syntax
 * error is sent at once too, so the shell reports it as that run's error.
 */
import { spawn, spawnSync } from 'node:child_process';
import { Script } from 'node:vm';

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

/**
 * Turns input lines into whole commands. `line()` resolves with the commands that are now
 * complete (often none, sometimes two: a block ends when the next statement starts);
 * `end()` gives what is left at end of input.
 */
export interface Gatherer {
  line(text: string): Promise<string[]>;
  end(): string[];
  /** Lines are waiting: the prompt is a continuation prompt. */
  readonly pending: boolean;
}

export type GatherPreset = 'posix' | 'python' | 'node' | null;

/**
 * The gatherer for a preset. `interactive` (a terminal): a statement runs as soon as it is
 * complete, and a blank line ends a block, as the REPLs do; from a script, Python and
 * JavaScript statements wait for the next line, which may continue them (an indented line,
 * `else:`, `.then(…)`), and blank lines inside a block are kept.
 */
export function gatherer(preset: GatherPreset, interactive: boolean): Gatherer {
  if (preset === 'python') return new LookaheadGatherer(pythonRules, interactive);
  if (preset === 'node') return new LookaheadGatherer(javascriptRules, interactive);
  return new ShellGatherer(preset === 'posix' && canJudgeCompleteness());
}

/** POSIX (bash -n judges) or one line per command; a line ending with `\` always continues. */
class ShellGatherer implements Gatherer {
  readonly #whole: boolean;
  #text = '';

  constructor(whole: boolean) {
    this.#whole = whole;
  }

  get pending(): boolean {
    return this.#text !== '';
  }

  async line(line: string): Promise<string[]> {
    const text = this.#text + line;
    if (
      line.endsWith('\\') ||
      (this.#whole && text.trim() !== '' && !(await isCompleteCommand(text)))
    ) {
      this.#text = `${text}\n`;
      return [];
    }
    this.#text = '';
    return [text];
  }

  end(): string[] {
    const text = this.#text;
    this.#text = '';
    return text.trim() === '' ? [] : [text];
  }
}

/** What a language says about the text gathered so far, and about the line after it. */
interface Rules {
  /** The text cannot end here: an open bracket, string, comment or continuation. */
  open(text: string): boolean;
  /** Complete, but the next line may still continue it (a block, a statement without `;`). */
  mayContinue(text: string): boolean;
  /** This next line continues a complete text that `mayContinue`. */
  continues(line: string): boolean;
  /** At a terminal, complete text still waits (for a blank line, as the REPL does). */
  waitsAtTerminal(text: string): boolean;
}

class LookaheadGatherer implements Gatherer {
  readonly #rules: Rules;
  readonly #interactive: boolean;
  #lines: string[] = [];

  constructor(rules: Rules, interactive: boolean) {
    this.#rules = rules;
    this.#interactive = interactive;
  }

  get pending(): boolean {
    return this.#lines.length > 0;
  }

  async line(line: string): Promise<string[]> {
    const ready: string[] = [];
    const blank = line.trim() === '';
    if (this.#lines.length > 0 && !this.#rules.open(this.#text())) {
      // Complete, and kept to see whether this line continues it.
      if (blank ? this.#interactive : !this.#rules.continues(line)) ready.push(this.#take());
    }
    if (this.#lines.length > 0 || !blank) this.#lines.push(line);
    if (this.#lines.length > 0 && !this.#waits(this.#text())) ready.push(this.#take());
    return ready;
  }

  end(): string[] {
    return this.#lines.length > 0 ? [this.#take()] : [];
  }

  #waits(text: string): boolean {
    if (this.#rules.open(text)) return true;
    return this.#interactive ? this.#rules.waitsAtTerminal(text) : this.#rules.mayContinue(text);
  }

  #text(): string {
    return this.#lines.join('\n');
  }

  /** The gathered lines as one command (blank lines at its end dropped). */
  #take(): string {
    const text = this.#text().replace(/\s+$/, '');
    this.#lines = [];
    return text;
  }
}

/**
 * Python, scanned for what can hold a statement open — brackets, triple-quoted strings, a
 * trailing backslash — without running it. A statement whose first line opens a block
 * (`if …:`, `def …:`, a decorator) takes every following line that is indented, blank, a
 * comment, or `else`/`elif`/`except`/`finally`; a line back at the left margin starts the
 * next statement. The interpreter judges the rest (a syntax error is that run's error).
 */
const pythonRules: Rules = {
  open: (text) => pythonOpen(text),
  mayContinue: (text) => {
    const first = text.split('\n')[0] ?? '';
    return (
      /^(@|(async\s+)?(if|for|while|def|class|with|try|match)\b)/.test(first) ||
      /:\s*$/.test(stripPythonComment(first))
    );
  },
  continues: (line) =>
    /^[ \t]/.test(line) || /^#/.test(line) || /^(else|elif|except|finally)\b/.test(line),
  // `if x: y` runs at once; a block waits for its blank line.
  waitsAtTerminal: (text) =>
    pythonRules.mayContinue(text) &&
    (text.includes('\n') || /:\s*$/.test(stripPythonComment(text))),
};

function stripPythonComment(line: string): string {
  // Good enough for the first line's trailing `:` (a `#` inside a string is rare there).
  const hash = line.indexOf('#');
  return hash < 0 ? line : line.slice(0, hash);
}

/** Whether Python text ends inside brackets, a triple-quoted string, or after a `\`. */
function pythonOpen(text: string): boolean {
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '#') {
      const end = text.indexOf('\n', i);
      if (end < 0) return false;
      i = end + 1;
    } else if (c === '"' || c === "'") {
      const triple = text.startsWith(c.repeat(3), i);
      const quote = triple ? c.repeat(3) : c;
      i += quote.length;
      for (;;) {
        if (i >= text.length) return true;
        if (text[i] === '\\') i += 2;
        else if (text.startsWith(quote, i)) break;
        else if (!triple && text[i] === '\n')
          return false; // an error: the interpreter says so
        else i++;
      }
      i += quote.length;
    } else {
      if ('([{'.includes(c)) depth++;
      else if (')]}'.includes(c)) depth = Math.max(0, depth - 1);
      else if (c === '\\' && (text[i + 1] === '\n' || i + 1 === text.length)) {
        if (i + 1 === text.length) return true;
      }
      i++;
    }
  }
  return depth > 0;
}

/**
 * JavaScript: V8 compiles the text as the Node preset will (a script; compiling runs
 * nothing): it is open while the only error is running out of input. Complete and not ended
 * by `;`, it may go on in the next line when that line starts with an operator, `.`, a
 * closing bracket, `else`, `catch` or `finally` (a method chain, an Allman-style `else`).
 */
const javascriptRules: Rules = {
  open: (text) => {
    try {
      new Script(text);
      return false;
    } catch (error) {
      const message = error instanceof SyntaxError ? error.message : '';
      return (
        /^(Unexpected end of input|Unterminated template literal|missing \) after argument list)$/.test(
          message,
        ) || unclosedComment(text)
      );
    }
  },
  mayContinue: (text) => !text.trimEnd().endsWith(';'),
  continues: (line) =>
    /^\s*([.?:,)\]}+\-*/%&|^=<>]|else\b|catch\b|finally\b)/.test(line) &&
    !/^\s*(\/\/|\/\*|\+\+|--)/.test(line),
  // As Node's REPL: complete text runs at once.
  waitsAtTerminal: () => false,
};

function unclosedComment(text: string): boolean {
  return text.lastIndexOf('/*') > text.lastIndexOf('*/');
}
