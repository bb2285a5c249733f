import { SONDE_VERSION } from '../../../base/src/version.js';

/** The agent's version: the package's. */
export const AGENT_VERSION: string = SONDE_VERSION;
