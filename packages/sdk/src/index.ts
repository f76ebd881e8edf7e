export { getConfig, standaloneConfig } from "./config.js";
export * from "./contract.js";
export * from "./paths.js";
export * as ratelimit from "./ratelimit.js";
export { createTestHarness } from "./runtime/harness.js";
export * as scheduler from "./scheduler.js";
export * as validate from "./validate.js";
export * as ws from "./ws.js";
