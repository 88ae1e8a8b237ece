/** The one IPC message of the command guard (guard.ts) to `tenure run`: the command is spawned. */
export const SPAWNED = "tenure:spawned";
