// Daemon entry points are added by the lifecycle/runtime work.
export {};
