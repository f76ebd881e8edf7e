/**
 * The read side of the lifecycle: every plugin's state, folded in memory from the live feed of the `plugin-` streams,
 * and the view the admin API, the admin page and the SSE feed show of it. Each event folded is handed on as a
 * LifecycleEvent (the service emits it as `event`).
 */
import type { EventStore, RecordedEvent, Subscription } from "@hecate/store";
import type { Logger } from "pino";
import {
  Flags,
  flagNames,
  hasFlag,
  type PluginState,
  type PluginType,
  pluginAggregate,
  statusName,
} from "./aggregate.js";

/** The plugin streams are `plugin-{name}`. */
export const STREAM_PREFIX = "plugin-";

export interface PluginView {
  name: string;
  version: string | null;
  type: PluginType;
  status: ReturnType<typeof statusName>;
  flags: string[];
  routes: { method: string; path: string }[];
  url: string;
  apiUrl: string;
  lastError: PluginState["last_error"];
  installedAt: string | null;
  updatedAt: string | null;
  restarts: number;
  /** The registry image (`host/repo@sha256:…`) of a plugin installed from `oci://`, else null. */
  image: string | null;
  /** The image pull in flight (layers and bytes), else null. */
  pull: PluginState["pull"];
}

export interface LifecycleEvent {
  plugin: string;
  type: string;
  revision: number;
  position: number;
  data: unknown;
  createdAt: string;
  view: PluginView;
}

export function viewOf(s: PluginState): PluginView {
  const name = s.name ?? "";
  return {
    name,
    version: s.installed_version,
    type: s.plugin_type,
    status: statusName(s.status),
    flags: flagNames(s.status),
    routes: s.routes,
    url: `/plugin/${name}/`,
    apiUrl: `/plugin/${name}/api/`,
    lastError: s.last_error,
    installedAt: s.installed_at,
    updatedAt: s.updated_at,
    restarts: s.restarts,
    image: s.oci?.image ?? null,
    pull: s.pull,
  };
}

/** What the read side needs. */
export interface PluginViewsDeps {
  store: EventStore;
  logger: Logger;
  /** An event was folded (the view in it is the plugin's state after it). */
  folded(e: LifecycleEvent): void;
}

export class PluginViews {
  private readonly byName = new Map<string, PluginState>();
  private feed: Subscription | undefined;

  constructor(private readonly d: PluginViewsDeps) {}

  /** Subscribes to the plugin streams and folds everything stored so far. */
  async start(): Promise<void> {
    this.feed = this.d.store.subscribe({ streamPrefix: STREAM_PREFIX, handler: (e) => this.fold(e) });
    await this.feed.caughtUp();
  }

  /** Resolves once the views have folded everything up to `position` (at once before `start`). */
  async caughtUp(position?: number): Promise<void> {
    await this.feed?.caughtUp(position);
  }

  async stop(): Promise<void> {
    await this.feed?.stop();
  }

  state(name: string): PluginState | undefined {
    return this.byName.get(name);
  }

  /** Every plugin ever recorded (removed ones too). */
  all(): IterableIterator<PluginState> {
    return this.byName.values();
  }

  /** True when a successful extraction of this plugin's package is followed by a load (activated, or never was). */
  loadsAfterExtract(name: string): boolean {
    const s = this.byName.get(name);
    return !!s && (hasFlag(s, Flags.ACTIVATED) || (!s.activated_at && !hasFlag(s, Flags.DEACTIVATED)));
  }

  view(name: string): PluginView | undefined {
    const s = this.byName.get(name);
    return s ? viewOf(s) : undefined;
  }

  list(): PluginView[] {
    return [...this.byName.values()].map(viewOf).sort((a, b) => a.name.localeCompare(b.name));
  }

  private fold(e: RecordedEvent): void {
    const name = e.stream.slice(STREAM_PREFIX.length);
    const next = pluginAggregate.evolve(this.byName.get(name) ?? pluginAggregate.initialState, e);
    this.byName.set(name, next);
    const ev: LifecycleEvent = {
      plugin: name,
      type: e.type,
      revision: e.revision,
      position: e.position,
      data: e.data,
      createdAt: e.createdAt,
      view: viewOf(next),
    };
    this.d.logger.info({ plugin: name, event: e.type, revision: e.revision }, "lifecycle event");
    this.d.folded(ev);
  }
}
