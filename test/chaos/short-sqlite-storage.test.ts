import { isSqliteFault } from "./faults-sqlite.js";
import { describeShortChaos } from "./short.js";

// SQLite's storage faults (test/chaos/faults-sqlite.ts): write lock, disk full, clocks.
describeShortChaos("sqlite", isSqliteFault);
