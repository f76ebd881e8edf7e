/**
 * What the plugin hosts report to the lifecycle (fire and forget: a report that cannot be recorded is logged): a plugin
 * crashed, was disabled or quarantined, a container went up or down (each a command on the plugin's aggregate), and
 * a plugin-host process died (`plugin_host_crashed_v1` in the daemon-level `host-crashes` stream).
 */
import { CommandRejected, type EventStore } from "@hecate/store";
import type { Logger } from "pino";
import type { HostCrash } from "../supervisor/plugin-hosts.js";
import type { PluginCommand } from "./aggregate.js";

/** Daemon-level stream of plugin-host deaths (`plugin_host_crashed_v1`). */
// Not "plugin-…": that prefix is the plugin streams'.
export const HOSTS_STREAM = "host-crashes";

/** What the reports need from the lifecycle service. */
export interface FaultReportsDeps {
  store: EventStore;
  logger: Logger;
  dispatch(name: string, cmd: PluginCommand): Promise<unknown>;
}

export class FaultReports {
  constructor(private readonly d: FaultReportsDeps) {}

  crash(name: string, reason: string): void {
    void this.d
      .dispatch(name, { type: "report_plugin_crash_v1", data: { reason } })
      .catch((err) => this.d.logger.warn({ plugin: name, err }, "cannot record crash"));
  }

  disabled(name: string, reason: string): void {
    void this.d
      .dispatch(name, { type: "disable_plugin_v1", data: { reason } })
      .catch((err) => this.d.logger.warn({ plugin: name, err }, "cannot record disable"));
  }

  quarantine(name: string, reason: string): void {
    this.d.logger.error({ plugin: name, reason }, "plugin quarantined");
    void this.d
      .dispatch(name, { type: "quarantine_plugin_v1", data: { reason } })
      .catch((err) => this.d.logger.warn({ plugin: name, err }, "cannot record quarantine"));
  }

  /** confirm_container_up_v1 / confirm_container_down_v1 (refusals, e.g. not running, are dropped). */
  containerHealth(name: string, up: boolean, reason: string): void {
    const cmd: PluginCommand = up
      ? { type: "confirm_container_up_v1", data: {} }
      : { type: "confirm_container_down_v1", data: { reason } };
    void this.d.dispatch(name, cmd).catch((err) => {
      if (!(err instanceof CommandRejected))
        this.d.logger.warn({ plugin: name, err }, "cannot record container health");
    });
  }

  hostCrash(crash: HostCrash): void {
    this.d.logger.error(crash, "plugin host died");
    this.d.store
      .append(HOSTS_STREAM, [{ type: "plugin_host_crashed_v1", data: { ...crash, at: new Date().toISOString() } }])
      .catch((err) => this.d.logger.error({ err }, "cannot record a plugin host death"));
  }

  /** The latest host deaths, newest first. */
  async hostCrashes(limit: number): Promise<(HostCrash & { at: string })[]> {
    return (await this.d.store.readStream(HOSTS_STREAM, { direction: "backward", limit })).map(
      (e) => e.data as HostCrash & { at: string },
    );
  }
}
