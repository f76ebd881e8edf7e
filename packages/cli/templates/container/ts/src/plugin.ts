/**
 * The {{name}} container plugin: the same callback-module shape as an in-process plugin. `main.ts` serves it inside
 * its Podman container (no network, read-only root, resource limits) on the Unix socket the daemon proxies
 * /plugin/{{name}}/api/ to.
 */
import { readFileSync } from "node:fs";
import { HttpError, type PluginManifest, type RouteDefinition } from "@hecate/sdk";

export function manifest(): PluginManifest {
  // manifest.json sits at the package root: two levels above dist/src/plugin.js
  return JSON.parse(readFileSync(new URL("../../manifest.json", import.meta.url), "utf8")) as PluginManifest;
}

export function init(): void {}

export function routes(): RouteDefinition[] {
  return [
    { method: "GET", path: "/hello", handler: (req) => ({ hello: req.query.name ?? "world", from: "a container" }) },
    {
      method: "POST",
      path: "/sum",
      handler: async (req) => {
        const body = await req.json<{ numbers?: unknown }>();
        if (!Array.isArray(body.numbers) || !body.numbers.every((n): n is number => typeof n === "number")) {
          throw new HttpError(400, "invalid_numbers", "numbers must be an array of numbers", { field: "numbers" });
        }
        return { sum: body.numbers.reduce((a: number, b: number) => a + b, 0) };
      },
    },
  ];
}
