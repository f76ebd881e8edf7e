export { getConfig, standaloneConfig } from "./config.js";
export * from "./contract.js";
export * from "./paths.js";
