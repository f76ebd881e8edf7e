// The UI of the {{name}} plugin in hecate's app shell (GET / on the plugin port; see "ui" in manifest.json): the
// module's default export is the element's class. The shell sets its `api-base` attribute (the plugin's API URL);
// `this.api(path)` calls it. `@hecate/sdk/ui` is served to browsers by the daemon (no build step needed).
import { HecateElement } from "@hecate/sdk/ui";

export default class extends HecateElement {
  async render() {
    const title = document.createElement("h2");
    title.textContent = "{{name}}";
    const greeting = document.createElement("p");
    greeting.className = "greeting";
    greeting.textContent = "…";
    this.root.replaceChildren(title, greeting);
    try {
      greeting.textContent = JSON.stringify(await this.api("/hello?name=shell"));
    } catch (err) {
      greeting.textContent = `the API answered: ${err.message}`;
    }
  }
}
