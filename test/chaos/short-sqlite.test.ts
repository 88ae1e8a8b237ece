import { isSqliteFault } from "./faults-sqlite.js";
import { describeShortChaos } from "./short.js";

// Process faults; SQLite's storage faults run in short-sqlite-storage.test.ts.
describeShortChaos("sqlite", (f) => !isSqliteFault(f));
