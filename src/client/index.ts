/** The client: ez-mode `createExec()`/`run()` and the duplex `Session`, local or via a daemon. */
export {
  createExec,
  DEFAULT_TIMEOUT,
  type Exec,
  type ExecOptions,
  type RunOptions,
  type RunTargetOptions,
  run,
} from './exec.js';
export type { Encoding, ExecResult, Output, OutputCallback, StdinSource } from './execute.js';
export {
  connect,
  type Received,
  type ReceivedExit,
  type ReceivedOutput,
  type ReceiveOptions,
  Session,
  type SessionOptions,
  type SessionState,
} from './session.js';
export { outputReadables, type StdinSink, stdinWritable } from './streams.js';
export type { LocalOptions, ResolvedTarget, Target } from './target.js';
