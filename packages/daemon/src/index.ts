// Daemon entry points are added by the lifecycle/runtime work.

export * from "./http/router.js";
export * from "./http/server.js";
export * from "./http/static.js";
export * from "./package/index.js";
export * from "./runtime/plugin-runtime.js";
export * from "./runtime/sdk-link.js";
