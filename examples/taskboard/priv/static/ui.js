// The task board as a custom element (the manifest's `ui`): the app shell (GET / on the plugin port) mounts it with
// `api-base`, the plugin's own page (index.html + app.js) too. It lists boards and tasks from the read model,
// creates/moves/completes/deletes tasks, uploads attachments, and follows the board's WebSocket so every open view
// sees changes as they happen. Everything lives in its shadow root; its styles are style.css next to this module.
import { HecateElement } from "@hecate/sdk/ui";

const MARKUP = `
<header>
  <h1>📋 Task board</h1>
  <label>Board <select id="board-select"></select></label>
  <form id="new-board" class="inline">
    <input name="name" placeholder="New board name" maxlength="100" required />
    <button type="submit">Add board</button>
  </form>
  <span id="live" class="live off" title="live updates">offline</span>
</header>
<main>
  <form id="new-task">
    <input name="title" placeholder="What needs doing?" maxlength="200" required />
    <input name="description" placeholder="Details (optional)" maxlength="5000" />
    <button type="submit">Add task</button>
  </form>
  <p id="error" role="alert" hidden></p>
  <section id="columns" aria-live="polite"></section>
</main>
<template id="task-card">
  <article class="task" draggable="true">
    <h3 class="title">Task</h3>
    <p class="description"></p>
    <ul class="attachments"></ul>
    <div class="actions">
      <button type="button" class="left" title="Move left">◀</button>
      <button type="button" class="complete">Complete</button>
      <button type="button" class="right" title="Move right">▶</button>
      <label class="attach">📎<input type="file" hidden /></label>
      <button type="button" class="delete" title="Delete">🗑</button>
    </div>
  </article>
</template>`;

const STYLE = new URL("style.css", import.meta.url).pathname;

/** `<taskboard-app api-base="/plugin/taskboard/api" board="main">`; emits `board-change` when another board opens. */
export default class TaskBoard extends HecateElement {
  render() {
    if (this.app) return; // drawn once; the board and the tasks update themselves
    const style = document.createElement("link");
    style.rel = "stylesheet";
    style.href = STYLE;
    const body = document.createElement("template");
    body.innerHTML = MARKUP;
    this.root.replaceChildren(style, body.content);
    this.app = startBoard(this, this.root, this.apiBase);
  }

  disconnectedCallback() {
    this.app?.close();
    this.app = undefined;
  }
}

/** The board's logic, inside `root`; URLs are `apiBase` + path (relative to the page when apiBase is). */
function startBoard(host, root, apiBase) {
  const api = (path) => new URL(`${apiBase}${path}`, document.baseURI);
  const $ = (sel) => root.querySelector(sel);
  const cardTemplate = $("#task-card");
  let board = null;
  let socket = null;
  let closed = false;

  async function call(method, path, body) {
    const init = { method, headers: {} };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["content-type"] = "application/json";
    }
    const res = await fetch(api(path), init);
    const data = res.status === 204 ? null : await res.json();
    if (!res.ok) {
      const e = data?.error ?? { code: String(res.status), message: res.statusText };
      const fields = Array.isArray(e.details)
        ? `: ${e.details.map((d) => `${d.path || d.location} ${d.message}`).join(", ")}`
        : "";
      throw new Error(`${e.message}${fields}`);
    }
    return data;
  }

  function showError(err) {
    const p = $("#error");
    p.textContent = err ? String(err.message ?? err) : "";
    p.hidden = !err;
  }

  async function guarded(fn) {
    try {
      showError(null);
      await fn();
    } catch (err) {
      showError(err);
    }
  }

  async function loadBoards(selectId) {
    const { boards } = await call("GET", "/boards");
    const select = $("#board-select");
    select.replaceChildren(...boards.map((b) => new Option(b.name, b.id)));
    const wanted = selectId ?? host.getAttribute("board") ?? boards[0]?.id;
    select.value = wanted;
    await openBoard(wanted);
  }

  async function openBoard(id) {
    board = await call("GET", `/boards/${encodeURIComponent(id)}`);
    host.setAttribute("board", id);
    host.dispatchEvent(new CustomEvent("board-change", { detail: { id }, bubbles: true, composed: true }));
    render(board.tasks);
    follow(id);
  }

  function render(tasks, flashId) {
    const columns = board.columns.map((name) => {
      const col = document.createElement("div");
      col.className = "column";
      col.dataset.column = name;
      const h = document.createElement("h2");
      h.textContent = `${name} (${tasks.filter((t) => t.column === name).length})`;
      col.append(h, ...tasks.filter((t) => t.column === name).map((t) => card(t, t.id === flashId)));
      col.addEventListener("dragover", (e) => {
        e.preventDefault();
        col.classList.add("drop");
      });
      col.addEventListener("dragleave", () => col.classList.remove("drop"));
      col.addEventListener("drop", (e) => {
        e.preventDefault();
        col.classList.remove("drop");
        const id = e.dataTransfer.getData("text/task-id");
        if (id) guarded(async () => applyTask(await call("POST", `/tasks/${id}/move`, { column: name }), id));
      });
      return col;
    });
    $("#columns").replaceChildren(...columns);
  }

  function card(t, flash) {
    const el = cardTemplate.content.firstElementChild.cloneNode(true);
    el.dataset.id = t.id;
    el.classList.toggle("completed", !!t.completedAt);
    el.classList.toggle("flash", flash);
    el.querySelector(".title").textContent = t.title;
    el.querySelector(".description").textContent = t.description;
    el.querySelector(".attachments").replaceChildren(
      ...t.attachments.map((a) => {
        const li = document.createElement("li");
        const link = document.createElement("a");
        link.href = api(`/tasks/${t.id}/attachments/${a.id}`);
        link.textContent = `${a.name} (${Math.ceil(a.size / 1024)} KiB)`;
        li.append(link);
        return li;
      }),
    );
    const i = board.columns.indexOf(t.column);
    const act = (method, path, body) => guarded(async () => applyTask(await call(method, path, body), t.id));
    const move = (to) => act("POST", `/tasks/${t.id}/move`, { column: board.columns[to] });
    const left = el.querySelector(".left");
    const right = el.querySelector(".right");
    left.disabled = i <= 0;
    right.disabled = i >= board.columns.length - 1;
    left.onclick = () => move(i - 1);
    right.onclick = () => move(i + 1);
    const complete = el.querySelector(".complete");
    complete.textContent = t.completedAt ? "Reopen" : "Complete";
    complete.onclick = () => act("POST", `/tasks/${t.id}/${t.completedAt ? "reopen" : "complete"}`);
    el.querySelector(".delete").onclick = () => act("DELETE", `/tasks/${t.id}`);
    el.querySelector("input[type=file]").onchange = (e) => {
      const file = e.target.files[0];
      if (!file) return;
      const form = new FormData();
      form.append("file", file, file.name);
      act("POST", `/tasks/${t.id}/attachments`, form);
    };
    el.addEventListener("dragstart", (e) => e.dataTransfer.setData("text/task-id", t.id));
    return el;
  }

  /** Shows the result of our own request at once (null = deleted), without waiting for the live message. */
  function applyTask(task, id = task?.id) {
    apply({ boardId: board.id, taskId: id, task });
  }

  /** Applies one live message (sent by the plugin after every change) to the board on screen. */
  function apply(msg) {
    if (!board || msg.boardId !== board.id || !msg.taskId) return;
    const rest = board.tasks.filter((t) => t.id !== msg.taskId);
    board.tasks = msg.task ? [...rest, msg.task].sort((a, b) => a.createdAt.localeCompare(b.createdAt)) : rest;
    render(board.tasks, msg.task?.id);
  }

  function follow(id) {
    socket?.close();
    const url = api(`/boards/${encodeURIComponent(id)}/live`);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const s = new WebSocket(url);
    socket = s;
    const live = $("#live");
    s.onopen = () => {
      live.className = "live on";
      live.textContent = "live";
    };
    s.onmessage = (e) => apply(JSON.parse(e.data));
    s.onclose = () => {
      if (socket !== s || closed) return;
      live.className = "live off";
      live.textContent = "offline";
      // Reconnect, then reload the board: changes made while offline are in the read model.
      setTimeout(() => guarded(() => openBoard(id)), 2000);
    };
  }

  $("#board-select").onchange = (e) => guarded(() => openBoard(e.target.value));
  $("#new-task").onsubmit = (e) => {
    e.preventDefault();
    const form = e.target;
    const field = (name) => form.elements.namedItem(name).value;
    const body = { title: field("title").trim(), description: field("description") };
    guarded(async () => {
      const task = await call("POST", `/boards/${encodeURIComponent(board.id)}/tasks`, body);
      form.reset();
      applyTask(task);
    });
  };
  $("#new-board").onsubmit = (e) => {
    e.preventDefault();
    const form = e.target;
    guarded(async () => {
      const b = await call("POST", "/boards", { name: form.elements.namedItem("name").value.trim() });
      form.reset();
      await loadBoards(b.id);
    });
  };

  guarded(() => loadBoards());
  return {
    close() {
      closed = true;
      socket?.close();
    },
  };
}
