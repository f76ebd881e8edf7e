// The plugin's own page (/plugin/taskboard/): the same element the app shell mounts, with the board in the URL.
import { defineElement } from "@hecate/sdk/ui";
import TaskBoard from "./ui.js";

const el = document.querySelector("taskboard-app");
const wanted = new URLSearchParams(location.search).get("board");
if (wanted) el.setAttribute("board", wanted);
el.addEventListener("board-change", (e) => history.replaceState(null, "", `?board=${encodeURIComponent(e.detail.id)}`));
defineElement("taskboard-app", TaskBoard);
