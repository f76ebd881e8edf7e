/**
 * The admin API's plugin list in cluster mode: each plugin with every node's own status (`nodes`), and the nodes of
 * the cluster with this one named (`cluster`). Single-node mode: the list as it is.
 */
import type { PluginView } from "../lifecycle/service.js";
import type { ClusterNode, ClusterNodeInfo, NodeStatusRecord } from "./cluster-node.js";

export interface PluginListAnswer {
  plugins: (PluginView & { nodes?: NodeStatusRecord[] })[];
  cluster?: { node: string; nodes: ClusterNodeInfo[] };
}

export async function pluginList(plugins: PluginView[], cluster: ClusterNode | undefined): Promise<PluginListAnswer> {
  if (!cluster) return { plugins };
  const [statuses, nodes] = await Promise.all([cluster.pluginStatuses(), cluster.nodes()]);
  return {
    plugins: plugins.map((p) => ({ ...p, nodes: statuses.get(p.name) ?? [] })),
    cluster: { node: cluster.nodeId, nodes },
  };
}
