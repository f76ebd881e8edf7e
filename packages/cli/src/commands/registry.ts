/**
 * `hecate registry login|logout|list|set`: per-registry settings of OCI installs, kept by the daemon in
 * `$HECATE_HOME/registries.json` (0600) through `PUT|DELETE|GET /admin/api/registries[/{registry}]`. The password is
 * read from stdin (never an argument: arguments are visible to every user in `ps`), sent once, never printed.
 */
import { CliError, EXIT } from "../errors.js";
import type { CommandContext } from "./plugin.js";

interface RegistryView {
  registry: string;
  username: string | null;
  passwordSet: boolean;
  insecure: boolean;
  scheme: "https" | "http";
}

const path = (registry: string) => `/admin/api/registries/${encodeURIComponent(registry)}`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY)
    throw new CliError(
      "usage",
      "pipe the password or token on stdin (e.g. `cat token | hecate registry login …`)",
      EXIT.USAGE,
    );
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

function describe(r: RegistryView): string {
  const who = r.username ? `${r.username}${r.passwordSet ? " (password set)" : ""}` : "no credentials";
  return `${r.registry}  ${who}  ${r.scheme}${r.insecure ? " (insecure: set)" : ""}`;
}

export async function loginCommand(ctx: CommandContext, registry: string, opts: { username: string }): Promise<void> {
  const password = await readStdin();
  if (!password) throw new CliError("usage", "no password on stdin", EXIT.USAGE);
  const r = await ctx.client.call<RegistryView>("PUT", path(registry), {
    json: { username: opts.username, password },
  });
  ctx.out.result(r, () => ctx.out.line(`credentials for ${describe(r)} stored`));
}

export async function logoutCommand(ctx: CommandContext, registry: string): Promise<void> {
  const r = await ctx.client.call<RegistryView>("PUT", path(registry), { json: { username: null } });
  ctx.out.result(r, () => ctx.out.line(`credentials for ${r.registry} removed`));
}

export async function setCommand(ctx: CommandContext, registry: string, opts: { insecure: boolean }): Promise<void> {
  const r = await ctx.client.call<RegistryView>("PUT", path(registry), { json: { insecure: opts.insecure } });
  ctx.out.result(r, () => ctx.out.line(describe(r)));
}

export async function listCommand(ctx: CommandContext): Promise<void> {
  const r = await ctx.client.call<{ registries: RegistryView[] }>("GET", "/admin/api/registries");
  ctx.out.result(r, () => {
    if (!r.registries.length) ctx.out.line("no registry settings (TLS for every registry, loopback ones over HTTP)");
    for (const x of r.registries) ctx.out.line(describe(x));
  });
}
