export * from "./base-image.js";
export * from "./podman.js";
export * from "./proxy.js";
export * from "./runtime.js";
