/**
 * The one front door to the native addon (`native/*.c`, built at install into
 * build/Release/procsock_spawn.node): whether it loaded, and the calls that are not about
 * spawning — a socket peer's credentials (the daemon's audit log) and a synchronous read of
 * a pipe (the Shell's stderr at its stdout marker). Callers import these from here, never
 * from a spawn backend. The loader itself still lives with the native spawn backend
 * (channel/spawn/native.ts) until that file is split by job.
 */
export {
  nativeAvailable as addonAvailable,
  nativeLoadError as addonLoadError,
  type PeerCredentials,
  peerCredentials,
  readAvailable,
  shutdownWrite,
} from '../channel/spawn/native.js';
