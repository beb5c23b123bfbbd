/** The client: ez-mode `createExec()`/`run()` and the duplex `Session`, local or via a daemon. */

export type { Target } from '../channel/target.js';
export { createExec, type Exec, type ExecDefaults, type RunOptions, run } from './exec.js';
export type { Encoding, ExecResult, Output, OutputCallback, StdinSource } from './execute.js';
export { DEFAULT_IDLE_TIMEOUT, EXEC_OPTIONS, type ExecOptions, type Protocol } from './options.js';
export {
  type ConnectOptions,
  connect,
  type Received,
  type ReceivedExit,
  type ReceivedOutput,
  type ReceiveOptions,
  Session,
  type SessionState,
} from './session.js';
export { outputReadables, type StdinSink, stdinWritable } from './streams.js';
