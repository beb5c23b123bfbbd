/**
 * A raw sockexec-protocol client for daemon tests, written from the protocol text alone
 * (it shares no code with src/), so a bug in procsock's codec cannot hide itself.
 *
 *   const client = await RawClient.connect(path);
 *   client.send(request(['uname', '-a'], []));   // argc, argv, terminator
 *   const reply = await client.reply();           // every pair until the daemon closes
 */
import { connect, type Socket } from 'node:net';

/** One netstring. */
export function ns(payload: string | Buffer): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return Buffer.concat([Buffer.from(`${data.length}:`), data, Buffer.from(',')]);
}

/** argc, argv, each stdin piece, and (unless `terminate` is false) the terminator `0:,`. */
export function request(
  argv: (string | Buffer)[],
  stdin: (string | Buffer)[] = [],
  terminate = true,
): Buffer {
  return Buffer.concat([
    ns(String(argv.length)),
    ...argv.map(ns),
    ...stdin.map(ns),
    ...(terminate ? [ns('')] : []),
  ]);
}

export type Pair = [type: string, data: string];

export interface Reply {
  /** Every pair, data as latin1-safe utf8 text. */
  pairs: Pair[];
  /** All stdout / stderr data joined. */
  stdout: string;
  stderr: string;
  /** The exit pair, if any. */
  exit: Pair | undefined;
  /** Bytes after the last complete pair (should be empty). */
  trailing: Buffer;
  /** How the connection ended. */
  ended: 'end' | 'error';
}

/** Parses complete netstrings from the front of `buffer`; returns them and the rest. */
export function parseNetstrings(buffer: Buffer): { items: Buffer[]; rest: Buffer } {
  const items: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const colon = buffer.indexOf(0x3a, offset);
    if (colon < 0) break;
    const digits = buffer.subarray(offset, colon).toString('latin1');
    if (!/^(0|[1-9][0-9]*)$/.test(digits)) throw new Error(`bad netstring length ${digits}`);
    const length = Number(digits);
    const end = colon + 1 + length;
    if (buffer.length < end + 1) break;
    if (buffer[end] !== 0x2c) throw new Error('netstring without its comma');
    items.push(buffer.subarray(colon + 1, end));
    offset = end + 1;
  }
  return { items, rest: buffer.subarray(offset) };
}

export class RawClient {
  readonly socket: Socket;
  #chunks: Buffer[] = [];
  #pairs: Pair[] = [];
  #waiters: (() => void)[] = [];
  #ended: 'end' | 'error' | null = null;
  readonly #closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#parse();
      this.#wake();
    });
    socket.on('error', () => {
      this.#ended ??= 'error';
    });
    this.#closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.#ended ??= 'end';
        this.#wake();
        resolve();
      });
    });
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  /** Connects, sends `bytes` in one write, and returns the whole reply. */
  static async exchange(path: string, bytes: Buffer): Promise<Reply> {
    const client = await RawClient.connect(path);
    client.send(bytes);
    return client.reply();
  }

  send(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Resolves with the pairs received so far once at least `count` are there (or the end). */
  async waitForPairs(count: number): Promise<Pair[]> {
    while (this.#pairs.length < count && this.#ended === null) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return [...this.#pairs];
  }

  /** Resolves once stdout received so far contains `text`. */
  async waitForStdout(text: string): Promise<void> {
    while (!this.#joined('stdout').includes(text)) {
      if (this.#ended !== null) throw new Error(`connection ended before stdout had ${text}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Waits until the daemon closes the connection; returns everything received. */
  async reply(): Promise<Reply> {
    await this.#closed;
    const pairs = [...this.#pairs];
    const last = pairs.at(-1);
    return {
      pairs,
      stdout: this.#joined('stdout'),
      stderr: this.#joined('stderr'),
      exit: last && (last[0] === 'exitcode' || last[0] === 'termsig') ? last : undefined,
      trailing: Buffer.concat(this.#chunks),
      ended: this.#ended ?? 'end',
    };
  }

  /** Resolves when the daemon has closed the connection. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #joined(type: string): string {
    return this.#pairs
      .filter(([t]) => t === type)
      .map(([, data]) => data)
      .join('');
  }

  #parse(): void {
    const { items, rest } = parseNetstrings(Buffer.concat(this.#chunks));
    const pairCount = Math.floor(items.length / 2);
    for (let i = 0; i < pairCount; i++) {
      this.#pairs.push([items[2 * i]!.toString('latin1'), items[2 * i + 1]!.toString('utf8')]);
    }
    // Keep an unpaired type netstring for the next round.
    const leftover = items.length % 2 === 1 ? ns(items.at(-1)!) : Buffer.alloc(0);
    this.#chunks = [Buffer.concat([leftover, rest])];
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * An extended request (README, "Protocol extension"), from the grammar alone: the opening,
 * the guard, the header's (name, value) pairs and its end, then (type, data) messages.
 */
export function extendedRequest(
  fields: [name: string, value: string][],
  messages: [type: string, data: string | Buffer][] = [['stdin', '']],
): Buffer {
  return Buffer.concat([
    ns('1;procsock/1'),
    ns(''),
    ...fields.flatMap(([name, value]) => [ns(name), ns(value)]),
    ns(''),
    ...messages.flatMap(([type, data]) => [ns(type), ns(data)]),
  ]);
}

/** `arg` fields for an argv. */
export function args(argv: string[]): [string, string][] {
  return argv.map((arg) => ['arg', arg]);
}
