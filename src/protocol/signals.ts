/** Signal names as the wire carries them: see `core/signals.ts`, where they now live (below the protocol). */
export { signalNumber, wireSignalName } from '../core/signals.js';
