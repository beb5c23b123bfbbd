/** The part of an EventEmitter (a stream, a process channel) that waiting needs. */
interface Emitter {
  on(event: string, listener: () => void): unknown;
  off(event: string, listener: () => void): unknown;
}

/**
 * Resolves on the next `'drain'`, or on `'close'`: once closed nothing more can be written,
 * so there is nothing to wait for.
 */
export function drainOrClose(emitter: Emitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      emitter.off('drain', done);
      emitter.off('close', done);
      resolve();
    };
    emitter.on('drain', done);
    emitter.on('close', done);
  });
}
