#!/usr/bin/env node
/**
 * The `procsock` command: `procsock <subcommand> [args…]`. Each subcommand lives in
 * `src/cli/<name>.ts` and exports `main(args, version) → Promise<exit status>`; it is
 * loaded only when used, so `procsock serve` does not load the client or the shell.
 */
import { readFileSync } from 'node:fs';

type SubcommandMain = (args: string[], version: string) => Promise<number>;

/** Subcommands, with their one-line summary for `procsock --help`. */
const SUBCOMMANDS: Record<string, { summary: string; load: () => Promise<SubcommandMain> }> = {
  serve: {
    summary: 'run the sockexec-compatible process daemon on a Unix socket',
    load: async () => (await import('./serve.js')).main,
  },
  run: {
    summary: 'run one program (locally or through the daemon), streaming its output',
    load: async () => (await import('./run.js')).main,
  },
  shell: {
    summary: 'drive a long-lived shell line by line, printing each command’s exit status',
    load: async () => (await import('./shell.js')).main,
  },
  doctor: {
    summary: 'say which spawn backend this installation uses (native: which file) and why',
    load: async () => (await import('./doctor.js')).main,
  },
};

const EXIT_USAGE = 100;

function version(): string {
  // src/cli/main.ts and dist/cli/main.js both sit two levels below package.json.
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

function help(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((name) => name.length));
  const lines = Object.entries(SUBCOMMANDS).map(
    ([name, { summary }]) => `  ${name.padEnd(width)}  ${summary}`,
  );
  return [
    'usage: procsock <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    'procsock <command> --help   options of one command',
    'procsock -v, --version      print the version and the spawn backend in use',
  ].join('\n');
}

async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === '-v' || name === '--version') {
    const { backendLine } = await import('./doctor.js');
    process.stdout.write(`procsock ${version()}\n${backendLine()}\n`);
    return 0;
  }
  if (name === '-h' || name === '--help') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  const subcommand = name === undefined ? undefined : SUBCOMMANDS[name];
  if (subcommand === undefined || !Object.hasOwn(SUBCOMMANDS, name!)) {
    process.stderr.write(
      `procsock: ${name === undefined ? 'missing command' : `unknown command ${JSON.stringify(name)}`} (try: procsock --help)\n`,
    );
    return EXIT_USAGE;
  }
  return (await subcommand.load())(rest, version());
}

process.exitCode = await main(process.argv.slice(2));
