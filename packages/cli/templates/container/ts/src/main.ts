// Entry point run inside the container (manifest.json container.command).
import { serveContainerPlugin } from "@hecate/sdk/container";
import * as plugin from "./plugin.js";

await serveContainerPlugin(plugin);
