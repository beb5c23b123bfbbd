/**
 * procsock: run programs without a shell — locally or through a sockexec-compatible
 * daemon — and script long-lived shells. This is the whole public surface.
 */

// Process channel
export { ProcessChannel, type ProcessChannelEvents } from './channel/channel.js';
export {
  LocalChannel,
  type LocalChannelOptions,
  type SpawnBackendChoice,
  type SpawnBackendName,
  spawnBackendInUse,
} from './channel/local.js';
export { connectToDaemon, SocketChannel } from './channel/socket.js';
// Client
export {
  connect,
  createExec,
  type Encoding,
  type Exec,
  type ExecOptions,
  type ExecResult,
  type LocalOptions,
  type OutputCallback,
  type Received,
  type ReceivedExit,
  type ReceivedOutput,
  type ReceiveOptions,
  type RunOptions,
  type RunTargetOptions,
  run,
  Session,
  type SessionOptions,
  type SessionState,
  type StdinSource,
  type Target,
} from './client/index.js';
// Errors
export {
  AbortError,
  ArgumentError,
  ClosedError,
  ConnectError,
  LimitError,
  ProcsockError,
  type ProcsockErrorCode,
  ProtocolError,
  ShellCrashError,
  ShellExitError,
  ShellTimeoutError,
  SocketPathError,
  StateError,
  TimeoutError,
} from './errors.js';
// Daemon policy
export type { AuditRecord, PeerCredentials } from './policy/audit.js';
export type { PolicyOptions, ResourceLimits } from './policy/policy.js';
// Protocol
export { encodeNetstring, NetstringDecoder } from './protocol/netstring.js';
export type { ExitStatus, OutputChunk, OutputType } from './protocol/reply.js';
// Server (daemon)
export { type ServeOptions, Server, type ServerState, serve } from './server/index.js';

// Shell
export {
  type ChannelFactory as ShellChannelFactory,
  CollectCommander,
  type Commander,
  DiscardCommander,
  LabellingCommander,
  lineParser,
  type OutputParser,
  type OutputSink,
  PassThroughCommander,
  type PosixShellOptions,
  type PosixStderr,
  RecallCommander,
  type Sentinel,
  type SentinelFactory,
  Shell,
  type ShellOptions,
  type ShellResult,
  type ShellState,
  type ShellTransport,
  TextCollector,
} from './shell/index.js';
