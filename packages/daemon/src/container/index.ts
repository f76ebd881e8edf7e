export * from "./base-image.js";
export * from "./container-plugins.js";
export * from "./podman.js";
export * from "./proxy.js";
