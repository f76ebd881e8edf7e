// @ts-check
/**
 * The {{name}} container plugin: the same callback-module shape as an in-process plugin. `main.js` serves it inside
 * its Podman container (no network, read-only root, resource limits) on the Unix socket the daemon proxies
 * /plugin/{{name}}/api/ to.
 */
import { readFileSync } from "node:fs";
import { HttpError } from "@hecate/sdk";

/** @returns {import("@hecate/sdk").PluginManifest} */
export function manifest() {
  return JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url), "utf8"));
}

export function init() {}

/** @returns {import("@hecate/sdk").RouteDefinition[]} */
export function routes() {
  return [
    { method: "GET", path: "/hello", handler: (req) => ({ hello: req.query.name ?? "world", from: "a container" }) },
    {
      method: "POST",
      path: "/sum",
      handler: async (req) => {
        /** @type {{ numbers?: unknown }} */
        const body = await req.json();
        if (!Array.isArray(body.numbers) || !body.numbers.every((n) => typeof n === "number")) {
          throw new HttpError(400, "invalid_numbers", "numbers must be an array of numbers", { field: "numbers" });
        }
        return { sum: body.numbers.reduce((a, b) => a + b, 0) };
      },
    },
  ];
}
