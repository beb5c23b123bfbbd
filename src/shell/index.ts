/** The shell driver: `Shell`, its commanders and sentinels. */
export {
  CollectCommander,
  type Commander,
  DiscardCommander,
  LabellingCommander,
  lineParser,
  type OutputParser,
  type OutputSink,
  PassThroughCommander,
  RecallCommander,
  TextCollector,
} from './commander.js';
export type { PosixStderr } from './posix.js';
export type { Sentinel, SentinelFactory } from './sentinel.js';
export {
  type PosixShellOptions,
  type ReplShellOptions,
  Shell,
  type ShellOptions,
  type ShellResult,
  type ShellState,
  type ShellTransport,
} from './shell.js';
