/**
 * procsock: run programs without a shell — locally or through a sockexec-compatible
 * daemon — and script long-lived shells. This is the whole public surface.
 */

// Process channel and the transport seam
export { ProcessChannel, type ProcessChannelEvents } from './channel/channel.js';
export {
  LocalChannel,
  type LocalChannelOptions,
  localTransport,
  type SpawnBackendChoice,
  type SpawnBackendName,
  spawnBackendInUse,
} from './channel/local.js';
export {
  connectToDaemon,
  DEFAULT_MAX_REPLY_DATA,
  daemonTransport,
  SocketChannel,
  type SocketChannelOptions,
} from './channel/socket.js';
export type {
  Launch,
  LaunchRequest,
  ProgramOptionName,
  ProgramOptions,
  Transport,
} from './channel/transport.js';
export type { EndReason, ResourceUsage, RunOutcome } from './channel/usage.js';
// Client
export {
  type ConnectOptions,
  connect,
  createExec,
  DEFAULT_IDLE_TIMEOUT,
  type Encoding,
  type Exec,
  type ExecDefaults,
  type ExecOptions,
  type ExecResult,
  type OutputCallback,
  type Protocol,
  type Received,
  type ReceivedExit,
  type ReceivedOutput,
  type ReceiveOptions,
  type RunOptions,
  run,
  Session,
  type SessionState,
  type StdinSource,
  type Target,
} from './client/index.js';
// Limits shared by every layer
export { DEFAULT_KILL_TIMEOUT, DEFAULT_MAX_BUFFER, MAX_TIMER } from './core/limits.js';
export type { ExitStatus, OutputChunk, OutputType } from './core/output.js';
// Errors
export {
  AbortError,
  ArgumentError,
  ClosedError,
  ConnectError,
  LimitError,
  PolicyError,
  ProcsockError,
  type ProcsockErrorCode,
  ProtocolError,
  ShellCrashError,
  ShellExitError,
  ShellTimeoutError,
  SocketPathError,
  SPAWN_ERROR_EXIT_CODE,
  SpawnError,
  StateError,
  TimeoutError,
  UnsupportedOptionError,
  UsageError,
} from './errors.js';
// Daemon policy
export type { AuditRecord, PeerCredentials } from './policy/audit.js';
export type { PolicyOptions, ResourceLimits } from './policy/policy.js';
// Protocol
export { encodeNetstring, NetstringDecoder } from './protocol/netstring.js';
// Server (daemon)
export { type ServeOptions, Server, type ServerState, serve } from './server/index.js';

// Shell
export {
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
