export * from "./errors.js";
export * from "./extract.js";
export * from "./integrity.js";
export * from "./manifest.js";
export * from "./manifest-package.js";
