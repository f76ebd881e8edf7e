// @ts-check
// Container plugins from OCI registries on the admin page: the "install from an image" form (POST /admin/api/plugins
// with {oci}) and a plugin row's pull progress bar with its Cancel button (POST /admin/api/plugins/{name}/cancel).
// The bar follows the plugin's `pull` (layers and bytes), updated live by the SSE lifecycle events.

/** @typedef {{generation:number,reference:string,digest:string,layers_total:number,layers_done:number,bytes_total:number,bytes_done:number}} PullProgress */

const mib = (/** @type {number} */ n) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** Flags of a container plugin's execution and pull shown under its status. */
const SHOWN_FLAGS = ["PULLING", "RUNNING", "STOPPED", "CONFIRMED_UP", "CONFIRMED_DOWN"];

/**
 * The status cell's extra content: the flags, and while a pull runs its progress bar and a Cancel button.
 * @param {{name:string,flags?:string[],pull?:PullProgress|null}} p
 * @param {(name: string, button: HTMLButtonElement) => void} onCancel
 * @returns {Node[]}
 */
export function pullNodes(p, onCancel) {
  const out = [];
  const flags = (p.flags ?? []).filter((f) => SHOWN_FLAGS.includes(f));
  if (flags.length) {
    const f = document.createElement("div");
    f.className = "flags";
    f.dataset.field = "flags";
    f.textContent = flags.join(" ");
    out.push(f);
  }
  const pull = p.pull;
  if (!pull) return out;
  const box = document.createElement("div");
  box.className = "pull";
  const bar = document.createElement("progress");
  bar.dataset.field = "pull-progress";
  // bytes when the registry told the sizes, else layers
  bar.max = pull.bytes_total > 0 ? pull.bytes_total : Math.max(pull.layers_total, 1);
  bar.value = pull.bytes_total > 0 ? pull.bytes_done : pull.layers_done;
  const label = document.createElement("span");
  label.dataset.field = "pull-label";
  label.textContent = `${pull.layers_done}/${pull.layers_total} layers · ${mib(pull.bytes_done)}/${mib(pull.bytes_total)}`;
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.dataset.action = "cancel";
  cancel.className = "danger";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => onCancel(p.name, cancel));
  box.append(bar, label, cancel);
  out.push(box);
  return out;
}

/**
 * The "install from an OCI registry" form: submits {oci} (wait=none); the row then follows the pull live.
 * @param {(path: string, init?: RequestInit) => Promise<any>} api
 * @param {(view: any) => void} onAccepted
 * @param {(text: string, isError?: boolean) => void} setStatus
 */
export function setupOciForm(api, onAccepted, setStatus) {
  const form = /** @type {HTMLFormElement} */ (document.querySelector("#oci-form"));
  const input = /** @type {HTMLInputElement} */ (document.querySelector("#oci-ref"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const ref = input.value.trim();
    if (!ref.startsWith("oci://")) {
      setStatus("an image reference starts with oci:// (oci://REGISTRY/REPO:TAG or @sha256:DIGEST)", true);
      return;
    }
    setStatus(`Resolving ${ref}…`);
    try {
      const view = await api("/plugins?wait=none", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ oci: ref }),
      });
      input.value = "";
      onAccepted(view);
    } catch (err) {
      setStatus(`Install of ${ref} refused: ${/** @type {Error} */ (err).message}`, true);
    }
  });
}
