// Daemon entry points.

export type { LogLine } from "./admin/logs.js";
export type { ClusterNodeInfo, NodePluginStatus, NodeStatusRecord } from "./cluster/cluster-node.js";
export type { PluginListAnswer } from "./cluster/list.js";
export { buildPythonImageArchive } from "./container/python-image.js";
export * from "./daemon.js";
export * from "./http/router.js";
export * from "./http/server.js";
export * from "./http/static.js";
export * from "./lifecycle/aggregate.js";
export { HECATE_VERSION } from "./lifecycle/package-ops.js";
export { LifecycleError, type LifecycleEvent, LifecycleService, type PluginView, viewOf } from "./lifecycle/service.js";
export * from "./worker/sdk-link.js";
export * from "./worker/worker-plugins.js";
